//! Clients: save, load, list and remove files on the share network.
//!
//! Each request to each server has its own random request id; the client
//! waits for the replies it expects, for at most the configured timeout, and
//! counts them.
//!
//! Seed flaw fixed here: *a fixed 5-second wait and no check that at least the
//! threshold of servers acknowledged a save*. The seed reported success
//! whatever came back. Here a save succeeds only when at least `min_acks`
//! (default: the threshold) servers acknowledged within the timeout; otherwise
//! the stored parts are deleted again and the error says how many servers
//! answered. A successful save reports how many servers hold the file.
//!
//! Seed flaw fixed here: *no delete and no versions*. Saving an existing tag
//! adds version N + 1 and keeps the older ones; [`Client::load`] takes a
//! version, [`Client::remove`] removes one version or all.
//!
//! The version of a save ([`Body::Versions`] asks each server online for
//! the highest version of the tag it has held, also one removed since, and
//! the records it holds): N = 1 + the version that at least t servers
//! report (the t-th highest report, t the save's threshold), or 1 + a
//! higher version that fewer servers report or hold a record of, when it
//! is at most [`MAX_STRAY_SKIP`] above: such a claim is left by a save that
//! reached too few servers, versions removed while the other servers were
//! offline, or a save made with a lower threshold, and its version is not
//! given to another save. A claim of fewer than t servers further above is
//! passed over, with a warning naming them: one faulty or forged server
//! (or a broker client answering in a server's name) moves a save by at
//! most [`MAX_STRAY_SKIP`] and cannot spend a tag's versions. Those servers
//! refuse N (a server refuses a new record at a version it held before),
//! and the save keeps N with the other servers when they are enough, as
//! after a race (below); when they are not, the save takes a version those
//! servers accept. A version above [`MAX_VERSION`] never counts (it is
//! warned about). No server ever stores a second record at a version it
//! held.
//!
//! Concurrent saves of one tag: a server never replaces a record it holds,
//! so two saves racing for N are told apart by the servers' "version N
//! exists" refusals. A save that
//! met such a refusal keeps N only if more than half of the servers it asked
//! stored it (two saves cannot both have that); otherwise it removes its own
//! records again (by its file id, never another save's) and tries N + 1, at
//! most [`MAX_SAVE_ATTEMPTS`] times.
//!
//! The save that keeps N was refused by the servers the loser reached
//! first, and the loser's rollback empties N there a moment later: the
//! winner stores its record again on each server that refused N although
//! its probe reported a version below N (the refusal was for a save that
//! came after the probe, not for the server's own past), a few times over
//! about 2 s ([`RACE_RETRY_WAITS_MS`]), until it stores it or answers
//! anything but "version N exists". Before, it never did: a race left the
//! version on fewer servers than the save went to (with 3 servers and t =
//! 2, none could be lost), and the warning blamed a server that could store
//! it. A server still refusing after the last try is reported with what it
//! said and why it was tried again. The loser waits for that before its
//! next attempt (see `let_winner_store`): its record of N + 1 would raise
//! those servers' highest version above N, and they would refuse N for
//! good.
//!
//! The latest version of a tag is the newest that at least t servers hold,
//! t read from its records' headers ([`Body::VersionsHeld`]): a newer one
//! that fewer hold (a stray or half-saved record, or a save whose servers
//! are offline) is passed over and named ([`LoadReport::passed_over`]).
//! When that newest version cannot be rebuilt, [`Client::load`] fails
//! ([`Error::LatestUnavailable`]); [`Client::load_or_older`] takes the
//! newest that rebuilds instead.
//!
//! A load asks t servers for their records, not all n, when the probe
//! found one save of the version held by its t servers: the t ranking
//! highest by a hash of each server with the tag and version, so a load
//! receives about the file's size and loads of different files spread over
//! the servers. The others are asked only when those do not give the file
//! back (see `load_version`); [`Client::check`] asks every server and
//! checks every record, which a load no longer does.
//!
//! A server that does not answer the probe (paused, slow, its answer
//! lost) is unknown, not a server that refuses N: counted as one, a lost
//! answer and one server claiming far up pushed a save above that claim.
//! A server that then misses the save's store too counts as refusing in
//! the save's later attempts. A save that retried reports the warnings of
//! the attempt that succeeded only.
//!
//! A store key's tag must be new, by the same rule: what at least t servers
//! say of it counts (see `check_tag_unused`); before, any one server that
//! said it held the tag refused the key.
//!
//! A save's probe must have the answer of at least one server, or the
//! save fails ([`Error::NoAnswer`]) before it stores anything. Without
//! one, the version would come from nothing but the save's own floor
//! (version 1, or the one after an attempt that lost), and only the
//! servers' refusals at the store would stop it: a server of this build
//! refuses a version it holds or held and removed, but a server of an
//! older build (which receives the probe and never answers it) keeps no
//! mark of the versions removed, and a save to such servers took the
//! first removed version again and reported success. One answer is
//! enough, and the quorum is not asked for more: every save is sent to
//! every server online, and a server of this build that answers reports
//! the highest version it ever held (kept after `rm`), so the version
//! follows it (within [`MAX_STRAY_SKIP`], as any claim); a version that
//! servers which did not answer hold and it does not (it was offline
//! then) is refused by them at the store when they are of this build, and
//! the save keeps it only by the race rule above (more than half of the
//! servers asked). Requiring t answers, or n - t + 1, would fail saves
//! that a server or two missed the probe of (a lost answer, a server slow
//! for a moment), which that rule keeps safe. Servers of an older build
//! beside one of this build that was offline at a removal are not
//! covered: upgrade servers before clients.
//!
//! A rollback goes to every server the save asked, not only to those that
//! acknowledged: a server paused or slow past the timeout gets the store
//! request late, and remembers the rollback to refuse it then (see
//! [`crate::store::RecordStore::put_save`]), so a save reported as rolled
//! back never becomes a version.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::{Instant, timeout_at};

use crate::broker::Broker;
use crate::config::Config;
use crate::crypto::{Kdf, Password};
use crate::endpoint::Endpoint;
use crate::error::{BrokerError, Error};
use crate::message::{Body, MAX_TAG_LEN, MAX_VERSION, Message, RequestId, ServerInfo};
use crate::server::SERVER_PREFIX;
use crate::sharing::{self, KeyDeriver, Received, SaveKeys};
use crate::tail::Tail;

/// Channel prefix of clients.
pub const CLIENT_PREFIX: &str = "seccs:client:";
/// Versions a save tries before it gives up to concurrent saves of its tag.
pub const MAX_SAVE_ATTEMPTS: usize = 8;
/// The waits before a save that won its version stores it again on a
/// server that refused it for another save's record there (see
/// [`Client::save`]): about 2 s in all, so that the loser of a race, which
/// rolls back as soon as it has its answers, is gone from that server.
pub const RACE_RETRY_WAITS_MS: [u64; 5] = [50, 100, 250, 600, 1000];
/// How long a save that lost its version waits, at most, for the winner
/// to store its record on the servers this one rolled back on, before it
/// tries the next version there (which would make them refuse the
/// winner's version for good).
pub const LOSER_WAIT: Duration = Duration::from_millis(2500);
/// How far above the version that t servers report a save looks for
/// records that fewer servers hold, to take the version after them (see
/// [`Client::save`]): records beyond it are passed over, so that a server
/// listing records at will moves a save's version up by at most this much.
pub const MAX_STRAY_SKIP: u64 = 1024;
/// Listed versions a load of the latest tries, newest first, until one rebuilds.
pub const MAX_LOAD_ATTEMPTS: usize = 8;
/// Versions that fail to decrypt after which a load of the latest stops: a
/// wrong password opens none, and each try runs the password KDF (a stray
/// record or two of someone else's must not stop it).
const MAX_DECRYPT_FAILURES: usize = 3;

/// Called with (bytes done, bytes in total) while a save uploads.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// How a client behaves.
///
/// Start from [`ClientOptions::default`] (or [`From<&Config>`]): it has the
/// default password KDF ([`Kdf::default`], Argon2id with 64 MiB and 3
/// passes), as the CLI uses. Never set [`Kdf::INSECURE_FAST`] outside
/// tests: it makes a stolen record's password cheap to guess, and a save
/// with it (or any KDF below [`Kdf::KEY_FLOOR`]'s cost) reports a warning
/// in [`SaveReport::warnings`].
///
/// ```
/// use std::time::Duration;
/// use seccs_net::{ClientOptions, Kdf};
///
/// let options = ClientOptions::default().with_timeout(Duration::from_secs(5));
/// assert_eq!(options.kdf, Kdf::default());
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long to wait for replies and acknowledgements; a timeout set
    /// here past a day is taken as a day, as by [`Self::with_timeout`].
    pub timeout: Duration,
    /// The password KDF for new saves.
    pub kdf: Kdf,
    /// Records needed to rebuild (default: n/2 + 1 of the servers online).
    pub threshold: Option<usize>,
    /// Acknowledgements a save needs (default and minimum: the threshold).
    pub min_acks: Option<usize>,
}

/// The longest wait for a reply: a day, as a configuration allows.
const MAX_TIMEOUT: Duration = Duration::from_secs(crate::config::MAX_TIMEOUT_SECS);

/// The deadline of a wait of `timeout` from now, a day at most: the clock
/// cannot hold now plus [`Duration::MAX`], and adding it panicked.
fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(MAX_TIMEOUT)
}

impl Default for ClientOptions {
    /// What a configuration naming only a broker gives: a 30 s timeout, the
    /// default KDF ([`Kdf::default`]), threshold n/2 + 1 of the servers
    /// online, acknowledgements from at least the threshold.
    fn default() -> Self {
        Self::from(&Config::new(""))
    }
}

impl ClientOptions {
    /// The defaults ([`ClientOptions::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// How long to wait for replies and acknowledgements: at most a day
    /// ([`MAX_TIMEOUT_SECS`](crate::config::MAX_TIMEOUT_SECS), the bound
    /// of a configuration's `timeout_secs`); a longer timeout is taken as a
    /// day. A deadline is the time now plus the timeout, which must stay
    /// within what the clock can hold.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// The password KDF for new saves (keep the default outside tests).
    pub fn with_kdf(mut self, kdf: Kdf) -> Self {
        self.kdf = kdf;
        self
    }

    /// Records needed to rebuild a file.
    pub fn with_threshold(mut self, threshold: usize) -> Self {
        self.threshold = Some(threshold);
        self
    }

    /// Acknowledgements a save needs (at least the threshold is used).
    pub fn with_min_acks(mut self, min_acks: usize) -> Self {
        self.min_acks = Some(min_acks);
        self
    }
}

impl From<&Config> for ClientOptions {
    fn from(c: &Config) -> Self {
        Self {
            timeout: c.timeout(),
            kdf: c.kdf.clone(),
            threshold: c.threshold,
            min_acks: c.min_acks,
        }
    }
}

/// Rules a save follows beyond the options: those of a store key
/// ([`crate::keyfile`]). The default is a plain save's: none.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SaveRules {
    /// The least threshold the save may use.
    pub min_threshold: usize,
    /// The tag must be new: no server may list or hold any version of it,
    /// so the save never becomes a newer version of someone else's file.
    pub new_tag: bool,
    /// A default threshold may not need every server online (n > 1): such
    /// a save is lost with any one server's disk, which for a store key
    /// loses the store. A threshold set in the options is taken as given.
    pub spare_server: bool,
}

/// What a save encrypts under: a password, whose keys the save derives
/// once its checks have passed, or keys derived ahead.
#[derive(Clone, Copy)]
pub(crate) enum Secret<'a> {
    Password(&'a Password),
    Keys(&'a SaveKeys),
}

/// What a save did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveReport {
    /// The version created.
    pub version: u64,
    /// Servers asked (n).
    pub servers: usize,
    /// Servers that hold the file now.
    pub stored_on: usize,
    /// Records needed to rebuild (t).
    pub threshold: usize,
    /// Bytes of each record.
    pub record_bytes: u64,
    /// What the save passed over or changed, for a person: a server's
    /// version above [`MAX_VERSION`] not counted, a claim of fewer than t
    /// servers passed over (and a save they hold that a load of the latest
    /// takes instead of this one), `min_acks` below the threshold raised to
    /// it, a cheap password KDF.
    pub warnings: Vec<String>,
    /// The servers asked that do not hold the file, and why.
    pub not_stored: Vec<NotStored>,
}

/// A server that a save asked and that does not hold the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotStored {
    /// The server's channel.
    pub server: String,
    /// What the server said (its refusal: a full disk, a record it could
    /// not write), escaped for a terminal, or why it could not be asked.
    pub why: String,
    /// Whether the server answered (it refused): it is online, so waiting
    /// for more servers does not help.
    pub answered: bool,
}

/// The warning of a save whose password KDF costs less than a store key's
/// floor ([`Kdf::check_key_floor`]), such as [`Kdf::INSECURE_FAST`].
fn weak_kdf_warning(setting: &str, value: u64, floor: u64) -> String {
    format!(
        "the password KDF is cheap ({setting} = {value}, below {floor}): whoever gets the \
         records can try passwords fast; leave [kdf] out of the configuration for the \
         default KDF"
    )
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    /// Servers that removed something.
    pub removed_from: usize,
    /// Servers online, all asked.
    pub asked: usize,
    /// The most servers a removed version was saved to (its records'
    /// headers say), when a server told: more than `removed_from` means
    /// servers offline now may still hold it, and it comes back with them.
    pub saved_to: Option<usize>,
}

/// What a load returned.
#[derive(Debug)]
pub struct LoadReport {
    /// The file.
    pub data: Vec<u8>,
    /// Its version.
    pub version: u64,
    /// Servers whose record was corrupt or forged, left out.
    pub bad_servers: Vec<String>,
    /// Each server of `bad_servers` with why its record was left out.
    pub bad_reasons: Vec<(String, String)>,
    /// Servers whose records were used.
    pub used_servers: Vec<String>,
    /// Servers asked for a record: the t chosen first when the probe found
    /// one save of the version held by enough servers, every server online
    /// when those did not give a whole file (see [`Client::load`]).
    pub asked_servers: Vec<String>,
    /// Servers holding another save of the same version (made while the
    /// servers were partitioned), left out; honest, unlike `bad_servers`.
    pub superseded_servers: Vec<String>,
    /// Servers whose record repeats the share another server gave (a copy
    /// of that server's record), left out; honest, unlike `bad_servers`.
    pub repeated_servers: Vec<String>,
    /// How many of the t fragments that are the ciphertext itself were
    /// missing from the records used and were restored from recovery
    /// fragments. A save gives those t fragments to the servers a load asks
    /// first, so this is 0 unless one of them is offline, lost its record
    /// or sent a bad one, or the save was made before saves did so.
    pub restored_fragments: usize,
    /// Newer listed versions that could not be rebuilt, newest first, each
    /// with the reason: [`Client::load_or_older`] loaded an older one.
    pub newer_failed: Vec<(u64, String)>,
    /// Newer versions that fewer servers hold than their save needs (a
    /// stray or half-saved record, or a save whose servers are offline),
    /// newest first, each with how many hold it: passed over when the
    /// latest was asked for.
    pub passed_over: Vec<(u64, String)>,
}

/// What [`Client::check`] found of one version on every server online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// The version checked.
    pub version: u64,
    /// How many records its save made (one a server).
    pub n: u8,
    /// How many rebuild it.
    pub t: u8,
    /// Servers whose record is an authentic share of the save, every one
    /// checked against the manifest, ordered by share.
    pub authentic: Vec<String>,
    /// Servers whose record is corrupt or forged, each with why.
    pub bad: Vec<(String, String)>,
    /// Servers holding another save of the same version (see
    /// [`LoadReport::superseded_servers`]).
    pub superseded: Vec<String>,
    /// Servers whose record repeats another server's share.
    pub repeated: Vec<String>,
    /// Servers that answered holding no record of the version.
    pub without_record: Vec<String>,
    /// Servers that did not answer, each with the failure.
    pub silent: Vec<(String, String)>,
}

impl CheckReport {
    /// Whether every record the save made is on a server online and
    /// authentic, and no server holds a bad one.
    pub fn is_whole(&self) -> bool {
        self.bad.is_empty() && self.authentic.len() >= usize::from(self.n)
    }
}

/// The records of one version that servers sent, and what the others said.
#[derive(Debug, Default)]
struct Fetched {
    records: Vec<(String, Vec<u8>)>,
    without_record: Vec<String>,
    silent: Vec<(String, String)>,
}

/// [`sharing::rebuild_received`] on a blocking thread, its shortfall
/// counting the `asked` servers, not only those that sent a record; no
/// record at all is [`Error::NotFound`]. `received` comes back with the
/// records a failed rebuild did not use.
async fn rebuild_blocking(
    tag: &str,
    mut received: Received,
    deriver: &KeyDeriver,
    asked: usize,
) -> (Result<sharing::Rebuilt, Error>, Received) {
    let version = received.version();
    if received.held() == 0 {
        return (Err(Error::NotFound(format!("{tag}@{version}"))), received);
    }
    let (tag, deriver) = (tag.to_owned(), deriver.clone());
    let joined = tokio::task::spawn_blocking(move || {
        let rebuilt = sharing::rebuild_received(&tag, &mut received, &deriver);
        (rebuilt, received)
    })
    .await;
    let (rebuilt, received) = match joined {
        Ok(done) => done,
        Err(e) => (
            Err(Error::io("rebuild", std::io::Error::other(e.to_string()))),
            Received::new(version),
        ),
    };
    let rebuilt = rebuilt.map_err(|e| match e {
        Error::NotEnoughShares {
            tag,
            version,
            good,
            needed,
            held,
            bad,
            ..
        } => Error::NotEnoughShares {
            tag,
            version,
            good,
            needed,
            held,
            asked,
            bad,
        },
        e => e,
    });
    (rebuilt, received)
}

/// The report of a load of `version` that asked `asked` and rebuilt it.
fn load_report(rebuilt: sharing::Rebuilt, version: u64, asked: Vec<String>) -> LoadReport {
    LoadReport {
        data: rebuilt.plaintext,
        version,
        bad_servers: rebuilt.bad,
        bad_reasons: rebuilt.bad_reasons,
        used_servers: rebuilt.used,
        asked_servers: asked,
        superseded_servers: rebuilt.superseded,
        repeated_servers: rebuilt.repeated,
        restored_fragments: rebuilt.restored,
        newer_failed: Vec::new(),
        passed_over: Vec::new(),
    }
}

/// `servers` in the order a load asks them for `version` of `tag`: by a
/// hash of the server with the tag and version, highest first (rendezvous
/// hashing). Loads of different files so spread over the servers, while
/// every load of one file asks the same ones, and no server's answer, clock
/// or position in a listing decides.
///
/// A save gives its fragments out in this order ([`Client::save_version`]):
/// the first t servers get the t fragments that are the ciphertext itself,
/// so a load that asks them ([`first_asked`]) joins their fragments and
/// restores none, as long as they all still hold their record. Since the
/// rank of a server depends on nothing but itself, the tag and the version,
/// servers that joined or left since do not change which of the save's
/// servers come first.
fn load_order(tag: &str, version: u64, servers: &[String]) -> Vec<String> {
    let rank = |server: &str| {
        let mut h = blake3::Hasher::new();
        h.update(b"seccs share load order\0");
        h.update(&(server.len() as u64).to_le_bytes());
        h.update(server.as_bytes());
        h.update(&version.to_le_bytes());
        h.update(tag.as_bytes());
        *h.finalize().as_bytes()
    };
    let mut ranked: Vec<([u8; 32], &String)> = servers.iter().map(|s| (rank(s), s)).collect();
    ranked.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().map(|(_, s)| s.clone()).collect()
}

/// The `count` of `holders` a load asks first for `version` of `tag`: the
/// first in [`load_order`].
fn first_asked(tag: &str, version: u64, holders: &[String], count: usize) -> Vec<String> {
    let mut first = load_order(tag, version, holders);
    first.truncate(count);
    first
}

/// One save of one version as the servers' record headers claim it.
#[derive(Debug, Clone)]
struct ClaimedSave {
    n: u8,
    t: u8,
    servers: Vec<String>,
}

impl ClaimedSave {
    /// Whether at least its t servers hold it.
    fn held(&self) -> bool {
        self.servers.len() >= usize::from(self.t)
    }
}

/// What the servers online said of one tag ([`Body::Versions`]).
#[derive(Debug, Default)]
struct Probe {
    /// Each answering server's highest version ever held.
    highest: Vec<(String, u64)>,
    /// The saves of each version, grouped by (file id, n, t).
    saves: BTreeMap<u64, Vec<ClaimedSave>>,
    /// The servers holding a record of each version that they cannot read
    /// (altered or damaged), or that names no possible save.
    unreadable: BTreeMap<u64, Vec<String>>,
    /// The first server's failure to answer, if one failed.
    first_failure: Option<String>,
    /// The servers that did not answer (paused, slow, or the answer lost).
    silent: Vec<String>,
}

impl Probe {
    /// Each version some server holds a record of, readable or not, with
    /// those servers.
    fn listed(&self) -> BTreeMap<u64, Vec<&str>> {
        let mut listed: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for (version, saves) in &self.saves {
            let on = listed.entry(*version).or_default();
            on.extend(
                saves
                    .iter()
                    .flat_map(|s| s.servers.iter().map(String::as_str)),
            );
        }
        for (version, servers) in &self.unreadable {
            let on = listed.entry(*version).or_default();
            on.extend(servers.iter().map(String::as_str));
        }
        listed
    }

    /// The versions held, ascending.
    fn versions(&self) -> Vec<u64> {
        self.saves.keys().copied().collect()
    }

    /// Whether some save of `version` is held by at least its t servers.
    fn held(&self, version: u64) -> bool {
        self.saves
            .get(&version)
            .is_some_and(|s| s.iter().any(ClaimedSave::held))
    }

    /// The one save of `version` the servers claim, when it is held by its
    /// t servers and no server holds an unreadable record of the version:
    /// then t of its servers' records rebuild it, unless some lie.
    fn sole_save(&self, version: u64) -> Option<&ClaimedSave> {
        match self.saves.get(&version)?.as_slice() {
            [save] if save.held() && !self.unreadable.contains_key(&version) => Some(save),
            _ => None,
        }
    }

    /// The save of `version` best held (most servers for its t).
    fn best(&self, version: u64) -> Option<&ClaimedSave> {
        self.saves.get(&version)?.iter().max_by(|a, b| {
            (a.servers.len() * usize::from(b.t.max(1)))
                .cmp(&(b.servers.len() * usize::from(a.t.max(1))))
        })
    }

    /// Why `version` is passed over: how many hold it of how many needed.
    fn shortfall(&self, version: u64) -> String {
        let unreadable = self.unreadable.get(&version).map_or(0, Vec::len);
        match self.best(version) {
            Some(s) => format!(
                "{} server{} online hold{} a record of it{}, its save needs {}",
                s.servers.len(),
                if s.servers.len() == 1 { "" } else { "s" },
                if s.servers.len() == 1 { "s" } else { "" },
                match unreadable {
                    0 => String::new(),
                    n => format!(" ({n} more hold one that is altered or damaged)"),
                },
                s.t
            ),
            None => "no record of it is readable".into(),
        }
    }

    /// Why `version` is not one that too few servers hold, if it is not:
    /// with the records that servers hold but cannot read, enough servers
    /// hold it. Its records were altered or damaged, and loading an older
    /// version in its place would pass that off as a save that never
    /// completed.
    fn altered(&self, version: u64) -> Option<String> {
        let unreadable = self.unreadable.get(&version)?;
        let best = self.best(version)?;
        (best.servers.len() + unreadable.len() >= usize::from(best.t)).then(|| {
            format!(
                "its records on {} of the servers online are altered or damaged ({}), and the \
                 {} readable ones are fewer than its save needs ({})",
                unreadable.len(),
                unreadable.join(", "),
                best.servers.len(),
                best.t
            )
        })
    }
}

/// What a save needs of the servers: how many it asks (n), its threshold
/// (t) and the acknowledgements it needs (at least t).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Quorum {
    servers: usize,
    t: usize,
    needed: usize,
    /// Servers asked whose answer to the probe is missing, not known to be
    /// down: what they hold is unknown, and they are not taken for servers
    /// that refuse the version.
    unknown: usize,
}

impl Quorum {
    /// Whether `accepting` servers keep a save that others refuse: enough
    /// acknowledgements, from more than half of the servers asked (so the
    /// version is not another save's too).
    fn kept_by(self, accepting: usize) -> bool {
        accepting >= self.needed && 2 * accepting > self.servers
    }
}

/// The version a save takes, from what the servers online said of the tag
/// ([`Probe`]), at or above `floor`. Returns it and warnings for a person.
///
/// A claim counts when at least t servers make it: the version follows the
/// t-th highest of the servers' highest versions, so that fewer than t
/// servers (a faulty one, a forged one, a broker client answering in a
/// server's name) cannot spend a tag's versions. A real save reached at
/// least its t servers and each keeps its version, so t servers report it
/// while they are online, when its t is this save's. A claim of fewer
/// servers (a highest version, or a record held) at most
/// [`MAX_STRAY_SKIP`] above is followed too: a save that reached too few
/// servers, versions removed while the other servers were offline, or a
/// save made with a lower threshold leaves one, and its version is not
/// given to another save.
///
/// A claim further above is passed over (its servers are named in a
/// warning). Its servers refuse the version, and a save refused so keeps
/// its version only with the acknowledgements of more than half of the
/// servers it asked ([`Client::save`]): when the others are not enough,
/// the save cannot succeed without those servers, and takes a version they
/// accept: after the least claim above that leaves enough of them, and the
/// claims just above that one, as above. A claim of [`MAX_VERSION`] itself
/// is never followed (it would end the tag), nor hides a claim below it.
/// A save passed over that enough servers for its own threshold hold is
/// named in a warning too: a load of the latest takes it, not this save.
/// A version above [`MAX_VERSION`] never counts (it is warned
/// about).
fn choose_version(
    tag: &str,
    probe: &Probe,
    quorum: Quorum,
    floor: u64,
) -> Result<(u64, Vec<String>), Error> {
    let mut warnings = Vec::new();
    let mut claims: Vec<(&str, u64)> = Vec::new();
    for (server, high) in &probe.highest {
        if *high > MAX_VERSION {
            warnings.push(format!(
                "server {server} holds {tag}@{high}, above the largest version a server \
                 stores ({MAX_VERSION}); it was not counted"
            ));
        } else {
            claims.push((server.as_str(), *high));
        }
    }
    let t = quorum.t.max(1);
    let mut highs: Vec<u64> = claims.iter().map(|(_, h)| *h).collect();
    highs.sort_unstable_by(|a, b| b.cmp(a));
    let counted = highs.get(t - 1).copied().unwrap_or(0);
    let at_max = || -> String {
        let names: Vec<&str> = claims
            .iter()
            .filter(|(_, h)| *h == MAX_VERSION)
            .map(|(s, _)| *s)
            .collect();
        names.join(", ")
    };
    if counted >= MAX_VERSION {
        return Err(Error::VersionExhausted {
            tag: tag.to_owned(),
            servers: at_max(),
            threshold: t,
        });
    }
    // A claim just above is most likely honest (a save that reached too
    // few servers, versions removed while the other servers were offline,
    // a save made with a lower threshold) and is followed, so that its
    // version is not given out again; a window bounds how far claims of
    // fewer than t servers move a save. A claim of the largest version is
    // passed over like one further above (followed, it would end the tag),
    // and never hides a claim below it.
    let listed = probe.listed();
    let after = |base: u64| {
        let start = base.saturating_add(1).max(floor);
        let window = start..start.saturating_add(MAX_STRAY_SKIP);
        claims
            .iter()
            .map(|(_, h)| *h)
            .filter(|h| window.contains(h))
            .chain(listed.range(window.clone()).map(|(v, _)| *v))
            .filter(|v| *v < MAX_VERSION)
            .max()
            .map_or(start, |top| top + 1)
    };
    // The rule by which a save refused by some servers keeps its version.
    let wins_without_refusers = |version: u64| {
        let refusing = claims.iter().filter(|(_, h)| *h >= version).count();
        let accepting = claims.len() - refusing + quorum.unknown;
        refusing == 0 || quorum.kept_by(accepting)
    };
    // When the servers above are needed, the version follows the least
    // claim above that leaves enough of them accepting (above every claim,
    // all do), and the claims just above that one as above.
    let mut bases: Vec<u64> = highs.iter().copied().filter(|h| *h > counted).collect();
    bases.push(counted);
    bases.sort_unstable();
    bases.dedup();
    let version = bases
        .into_iter()
        .map(after)
        .find(|v| wins_without_refusers(*v))
        .unwrap_or_else(|| after(counted));
    if version > MAX_VERSION {
        let mut servers = at_max();
        if let Some(on) = listed.get(&MAX_VERSION) {
            servers = on.join(", ");
        }
        if servers.is_empty() {
            servers = "the servers that refused the versions below it".into();
        }
        return Err(Error::VersionsClaimed {
            tag: tag.to_owned(),
            servers,
            threshold: t,
        });
    }
    let mut passed: Vec<&str> = claims
        .iter()
        .filter(|(_, h)| *h >= version)
        .map(|(s, _)| *s)
        .collect();
    for (_, servers) in listed.range(version..) {
        passed.extend(servers.iter().copied());
    }
    passed.sort_unstable();
    passed.dedup();
    if !passed.is_empty() {
        let top = claims
            .iter()
            .map(|(_, h)| *h)
            .chain(listed.range(version..).map(|(v, _)| *v))
            .max()
            .unwrap_or(version);
        warnings.push(format!(
            "{} report{} {tag} up to version {top}, a claim fewer than {t} servers online \
             make (this save's threshold): it was passed over and the save went to the \
             other servers; a save that reached too few servers, versions removed while \
             the others were offline, or a faulty or forged server leaves such a claim",
            passed.join(", "),
            if passed.len() == 1 { "s" } else { "" },
        ));
    }
    // A passed-over save that enough servers for its own threshold hold
    // (one made while the other servers were offline, or with a lower
    // threshold) is what a load of the latest takes, not this save.
    let shadow = probe.saves.range(version..).rev().find_map(|(v, saves)| {
        saves
            .iter()
            .filter(|s| s.held())
            .max_by_key(|s| s.servers.len())
            .map(|s| (*v, s))
    });
    if let Some((v, save)) = shadow {
        warnings.push(format!(
            "{} hold{} {tag}@{v}, a save of threshold {} that they are enough for: a load of \
             {tag} without a version takes that version (or a newer one), not this save, while \
             they are online{}; load this save by its version",
            save.servers.join(", "),
            if save.servers.len() == 1 { "s" } else { "" },
            save.t,
            if probe.saves.contains_key(&version) {
                ", and servers online hold another save of this save's version"
            } else {
                ""
            },
        ));
    }
    Ok((version, warnings))
}

/// Whether a store key may be saved as version 1 of `tag` ([`Probe`]: what
/// the servers online said of it): the warnings for a person, or why not.
///
/// The tag must be new: a key saved over a file or another key becomes a
/// version that its store loads. A server that lists a record of the tag
/// or remembers a version of it (removed since) says it is not; as in
/// [`choose_version`], that counts when at least t servers say it (t the
/// save's threshold), so that one faulty or forged server (or a broker
/// client answering in a server's name) cannot refuse every new tag. Fewer
/// servers' claim is passed over, with a warning naming them, when the
/// others are enough for the save by the rule that keeps a version after a
/// race (`min_acks`, and more than half of the servers asked): those servers
/// refuse version 1 and the save is kept by the others. When the others are
/// not enough, the save could not succeed without the servers that say the
/// tag was used, and is refused.
fn check_tag_unused(tag: &str, probe: &Probe, quorum: Quorum) -> Result<Vec<String>, Error> {
    let listed = probe.listed();
    let mut claimants: Vec<&str> = probe
        .highest
        .iter()
        .filter(|(_, h)| *h > 0)
        .map(|(s, _)| s.as_str())
        .chain(listed.values().flatten().copied())
        .collect();
    claimants.sort_unstable();
    claimants.dedup();
    if claimants.is_empty() {
        return Ok(Vec::new());
    }
    let answered = probe.highest.len().max(claimants.len());
    let accepting = answered - claimants.len() + quorum.unknown;
    let t = quorum.t.max(1);
    if claimants.len() >= t || !quorum.kept_by(accepting) {
        let versions: Vec<u64> = listed.into_keys().collect();
        if !versions.is_empty() {
            return Err(Error::TagExists {
                tag: tag.to_owned(),
                versions,
            });
        }
        return Err(Error::TagUsedBefore {
            tag: tag.to_owned(),
            highest: probe.highest.iter().map(|(_, h)| *h).max().unwrap_or(0),
        });
    }
    let top = probe
        .highest
        .iter()
        .map(|(_, h)| *h)
        .chain(listed.keys().copied())
        .max()
        .unwrap_or(0);
    Ok(vec![format!(
        "{} report{} {tag} as used (up to version {top}), a claim fewer than {t} servers \
         online make (this save's threshold): it was passed over and the key went to \
         version 1 on the other servers; a faulty or forged server leaves such a claim, and \
         so does a tag held by servers offline now, whose version 1 then holds two saves \
         once they are back (each store opens only with its own key)",
        claimants.join(", "),
        if claimants.len() == 1 { "s" } else { "" },
    )])
}

/// How one attempt of a save ended, when it did not fail.
#[derive(Debug)]
enum Attempt {
    /// Enough servers hold it.
    Saved(SaveReport),
    /// Another save holds its version (a server said "version exists"):
    /// try a higher one. `silent`: the servers that did not answer.
    Lost {
        /// Servers that did not answer the store (paused, slow, down).
        silent: Vec<String>,
        /// Servers that had stored this attempt's record (rolled back).
        rolled_back: Vec<String>,
        /// The file, decrypted back from this attempt's records; wiped
        /// when dropped, as the next attempt may fail before it takes it.
        plaintext: zeroize::Zeroizing<Vec<u8>>,
    },
}

/// One version of a tag across the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionListing {
    /// The version.
    pub version: u64,
    /// Servers holding a record of it.
    pub servers: usize,
    /// Bytes stored for it on all servers.
    pub stored_bytes: u64,
}

/// One tag across the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagListing {
    /// The tag.
    pub tag: String,
    /// Its versions, ascending.
    pub versions: Vec<VersionListing>,
}

/// What a server told about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// The server's channel.
    pub channel: String,
    /// Its self-description.
    pub info: ServerInfo,
}

/// A connection to the share network.
pub struct Client {
    endpoint: Endpoint,
    options: ClientOptions,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("channel", &self.endpoint.channel())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn check_tag(tag: &str) -> Result<(), Error> {
    if tag.is_empty() {
        Err(Error::InvalidTag("empty"))
    } else if tag.len() > MAX_TAG_LEN {
        Err(Error::InvalidTag("longer than 8 KiB"))
    } else {
        Ok(())
    }
}

/// The checks of a tag to save: a new tag must also be addressable, so it
/// may not end in `@` and digits, which `TAG@N` reads as a version. A save
/// makes them first; a caller that derives the keys ahead
/// ([`Client::save_keys`]) makes them before, so that a mistyped tag does
/// not cost a KDF run.
pub fn check_new_tag(tag: &str) -> Result<(), Error> {
    check_tag(tag)?;
    if tag.chars().any(char::is_control) {
        return Err(Error::InvalidTag(
            "it holds a control character (a newline, an escape), which would garble listings",
        ));
    }
    if crate::parse_tag_version(tag).1.is_some() {
        return Err(Error::InvalidTag(
            "it ends in @ and digits, which name a version (TAG@N); use another tag",
        ));
    }
    Ok(())
}

impl Client {
    /// Connects to the broker of `config`.
    pub async fn connect(config: &Config) -> Result<Self, Error> {
        let broker = crate::broker::connect(&config.broker).await?;
        Self::new(broker, config.into()).await
    }

    /// A client on `broker`.
    pub async fn new(broker: Arc<dyn Broker>, options: ClientOptions) -> Result<Self, Error> {
        let mut id = [0u8; 16];
        seccs_core::random_bytes(&mut id)?;
        let channel = format!("{CLIENT_PREFIX}{}", hex::encode(id));
        let endpoint =
            Endpoint::open(broker, channel, None, options.timeout.min(MAX_TIMEOUT)).await?;
        Ok(Self {
            endpoint,
            options,
            progress: None,
        })
    }

    /// Reports upload progress of saves to `progress`.
    pub fn set_progress(&mut self, progress: Option<ProgressFn>) {
        self.progress = progress;
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Changes the options.
    pub fn options_mut(&mut self) -> &mut ClientOptions {
        &mut self.options
    }

    /// Channels of the servers online now. Waits for the broker no longer
    /// than the options' timeout: a broker that is gone would otherwise
    /// hold the listing for as long as its client keeps reconnecting.
    pub async fn servers(&self) -> Result<Vec<String>, Error> {
        let deadline = deadline_after(self.options.timeout);
        timeout_at(deadline, self.endpoint.broker().channels(SERVER_PREFIX))
            .await
            .map_err(|_| Error::Timeout("the broker".to_owned()))?
            .map_err(Error::from)
    }

    async fn ask(
        &self,
        server: &str,
        body: Body,
        progress: Option<&(dyn Fn(u64) + Send + Sync)>,
    ) -> Result<Body, Error> {
        let request_id = RequestId::random()?;
        let message = Message { request_id, body };
        let (head, record) = message.encode_parts();
        self.ask_encoded(server, request_id, &head, &record, progress)
            .await
    }

    /// [`Self::ask`] with the request already encoded, as `head` then
    /// `record` (see [`Message::encode_parts`]), under `request_id`.
    async fn ask_encoded(
        &self,
        server: &str,
        request_id: RequestId,
        head: &[u8],
        tail: &dyn Tail,
        progress: Option<&(dyn Fn(u64) + Send + Sync)>,
    ) -> Result<Body, Error> {
        let mut replies = self.endpoint.expect_replies(request_id);
        let deadline = deadline_after(self.options.timeout);
        self.send_before(deadline, server, (head, tail), progress)
            .await?;
        for _ in 0..64 {
            match timeout_at(deadline, replies.recv()).await {
                Ok(Some(inc)) if inc.from == server => return Ok(inc.message.body),
                Ok(Some(inc)) => {
                    tracing::warn!(from = inc.from, "reply from an unexpected host dropped")
                }
                Ok(None) => return Err(BrokerError::Closed.into()),
                Err(_) => return Err(Error::Timeout(server.to_owned())),
            }
        }
        Err(Error::Timeout(server.to_owned()))
    }

    async fn ask_all(
        &self,
        servers: &[String],
        body: impl Fn() -> Body,
    ) -> Vec<(String, Result<Body, Error>)> {
        let asks = servers.iter().map(|s| {
            let b = body();
            async move { (s.clone(), self.ask(s, b, None).await) }
        });
        join_all(asks).await
    }

    /// [`Self::ask_all`], failing with [`Error::NoAnswer`] when servers
    /// were asked and none answered: a listing of nothing would say they
    /// hold nothing.
    async fn ask_all_answered(
        &self,
        servers: &[String],
        body: impl Fn() -> Body,
    ) -> Result<Vec<(String, Result<Body, Error>)>, Error> {
        let replies = self.ask_all(servers, body).await;
        match replies.iter().find_map(|(_, r)| r.as_ref().err()) {
            Some(first) if replies.iter().all(|(_, r)| r.is_err()) && !replies.is_empty() => {
                Err(Error::NoAnswer {
                    asked: replies.len(),
                    first: first.to_string(),
                    versions: false,
                })
            }
            _ => Ok(replies),
        }
    }

    /// Every version of every tag starting with `prefix`, across all servers.
    pub async fn list(&self, prefix: &str) -> Result<Vec<TagListing>, Error> {
        // Servers drop a request they cannot decode, and none answering
        // would be said as servers that do not answer.
        if prefix.len() > MAX_TAG_LEN {
            return Err(Error::InvalidTag(
                "a prefix longer than 8 KiB, which no tag is",
            ));
        }
        let servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let mut tags: BTreeMap<String, BTreeMap<u64, (usize, u64)>> = BTreeMap::new();
        for (server, reply) in self
            .ask_all_answered(&servers, || Body::List {
                prefix: prefix.to_owned(),
            })
            .await?
        {
            match reply {
                Ok(Body::Listed { entries }) => {
                    // A server counts once per version, however often its
                    // reply names it.
                    let mut seen = std::collections::BTreeSet::new();
                    for e in entries.into_iter().filter(|e| e.tag.starts_with(prefix)) {
                        for v in e.versions {
                            if !seen.insert((e.tag.clone(), v.version)) {
                                continue;
                            }
                            let slot = tags
                                .entry(e.tag.clone())
                                .or_default()
                                .entry(v.version)
                                .or_default();
                            slot.0 += 1;
                            slot.1 = slot.1.saturating_add(v.stored_bytes);
                        }
                    }
                }
                Ok(other) => tracing::warn!(server, "unexpected reply to list: {other:?}"),
                Err(e) => tracing::warn!(server, "list failed: {e}"),
            }
        }
        Ok(tags
            .into_iter()
            .map(|(tag, versions)| TagListing {
                tag,
                versions: versions
                    .into_iter()
                    .map(|(version, (servers, stored_bytes))| VersionListing {
                        version,
                        servers,
                        stored_bytes,
                    })
                    .collect(),
            })
            .collect())
    }

    /// [`Self::probe`], failing with [`Error::NoAnswer`] when servers were
    /// asked and none answered: that is no tag, not a tag without versions.
    /// Servers of a build older than this client's receive the request and
    /// never answer it, so the error names them among the causes.
    async fn probe_answered(&self, tag: &str, servers: &[String]) -> Result<Probe, Error> {
        let mut probe = self.probe(tag, servers).await;
        if probe.highest.is_empty()
            && let Some(first) = probe.first_failure.take()
        {
            return Err(Error::NoAnswer {
                asked: servers.len(),
                first,
                versions: true,
            });
        }
        Ok(probe)
    }

    /// What `servers` hold of `tag` ([`Body::Versions`]); a server that
    /// does not answer is left out (and named in [`Probe::silent`]), and
    /// one that answers something else is left out too.
    async fn probe(&self, tag: &str, servers: &[String]) -> Probe {
        let mut groups: BTreeMap<(u64, [u8; 16], u8, u8), Vec<String>> = BTreeMap::new();
        let mut probe = Probe::default();
        for (server, reply) in self
            .ask_all(servers, || Body::Versions {
                tag: tag.to_owned(),
            })
            .await
        {
            match reply {
                Ok(Body::VersionsHeld { highest, saves }) => {
                    // A server counts once per version, however often its
                    // reply names it.
                    let mut seen = std::collections::BTreeSet::new();
                    for save in saves {
                        if !seen.insert(save.version) {
                            continue;
                        }
                        if save.is_readable() {
                            groups
                                .entry((save.version, save.file_id, save.n, save.t))
                                .or_default()
                                .push(server.clone());
                        } else {
                            probe
                                .unreadable
                                .entry(save.version)
                                .or_default()
                                .push(server.clone());
                        }
                    }
                    probe.highest.push((server, highest));
                }
                Ok(Body::Refused { reason }) => {
                    // Escaped: a server's words reach a terminal.
                    let reason = reason.escape_debug().to_string();
                    tracing::warn!(server, "versions refused: {reason}");
                    probe
                        .first_failure
                        .get_or_insert_with(|| format!("{server} refused: {reason}"));
                }
                Ok(other) => {
                    tracing::warn!(server, "unexpected reply to versions: {other:?}");
                    probe
                        .first_failure
                        .get_or_insert_with(|| format!("{server}: not an answer to versions"));
                }
                Err(e) => {
                    tracing::warn!(server, "versions failed: {e}");
                    probe.first_failure.get_or_insert_with(|| e.to_string());
                    probe.silent.push(server);
                }
            }
        }
        for ((version, _, n, t), servers) in groups {
            probe
                .saves
                .entry(version)
                .or_default()
                .push(ClaimedSave { n, t, servers });
        }
        probe
    }

    /// What each server online says about itself.
    pub async fn server_status(&self) -> Result<Vec<ServerStatus>, Error> {
        let servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let mut out = Vec::new();
        for (channel, reply) in self.ask_all_answered(&servers, || Body::Info).await? {
            match reply {
                Ok(Body::InfoReply(info)) => out.push(ServerStatus { channel, info }),
                Ok(other) => tracing::warn!(channel, "unexpected reply to info: {other:?}"),
                Err(e) => tracing::warn!(channel, "info failed: {e}"),
            }
        }
        Ok(out)
    }

    /// The largest file [`Client::save`] would carry now: it depends on the
    /// threshold, hence on the servers online. Check a file's length against
    /// it before reading the file into memory.
    pub async fn max_save_len(&self) -> Result<u64, Error> {
        let n = self.servers().await?.len();
        Ok(sharing::max_file_len(self.threshold_for(n)?))
    }

    /// The threshold of a save to `n` servers: the one set in the options,
    /// else a majority.
    fn threshold_for(&self, n: usize) -> Result<usize, Error> {
        if n == 0 {
            return Err(Error::NoServers);
        }
        let t = self.options.threshold.unwrap_or(n / 2 + 1);
        if t == 0 || t > n || n > 255 {
            return Err(Error::BadThreshold {
                threshold: t,
                servers: n,
            });
        }
        Ok(t)
    }

    /// Saves `data` as a new version of `tag`. The save works on one copy
    /// of `data`; [`Client::save_owned`] takes the file's own buffer.
    pub async fn save(
        &self,
        tag: &str,
        data: &[u8],
        password: &Password,
    ) -> Result<SaveReport, Error> {
        self.save_owned(tag, sharing::split_buffer(data), password)
            .await
    }

    /// [`Client::save`], encrypting and cutting `data` where it lies: a
    /// save then holds the file once (encrypted, its buffer the first t
    /// fragments) and a few stripes of the n - t recovery fragments, which
    /// are coded again as they are sent. A save that must try another
    /// version decrypts the file back from its records
    /// ([`sharing::SplitRecords::into_plaintext`]).
    ///
    /// The password's keys are derived (after the checks that need no
    /// KDF) while `data` is held; derive them before reading the file
    /// ([`Client::save_keys`], then [`Client::save_owned_keyed`]) and the
    /// KDF's memory is free again before the file is read.
    pub async fn save_owned(
        &self,
        tag: &str,
        data: Vec<u8>,
        password: &Password,
    ) -> Result<SaveReport, Error> {
        self.save_with(tag, data, Secret::Password(password), SaveRules::default())
            .await
    }

    /// The password's keys for saves, derived by the options' KDF under a
    /// fresh salt (on a blocking thread). An empty password is refused:
    /// anyone on the broker could load what it guards.
    pub async fn save_keys(&self, password: &Password) -> Result<SaveKeys, Error> {
        if password.expose_secret().is_empty() {
            return Err(Error::EmptyPassword);
        }
        let (kdf, password) = (self.options.kdf.clone(), password.clone());
        tokio::task::spawn_blocking(move || SaveKeys::derive(&kdf, &password))
            .await
            .map_err(|e| Error::io("derive", std::io::Error::other(e.to_string())))?
    }

    /// [`Client::save_owned`] under keys derived ahead
    /// ([`Client::save_keys`]) for this one save: a save that retries at
    /// another version uses them again. Keys used for several saves stay
    /// safe (each save has its own file id and nonces), but their manifests
    /// name one salt, which tells the servers that one derivation made
    /// them.
    pub async fn save_owned_keyed(
        &self,
        tag: &str,
        data: Vec<u8>,
        keys: &SaveKeys,
    ) -> Result<SaveReport, Error> {
        self.save_with(tag, data, Secret::Keys(keys), SaveRules::default())
            .await
    }

    /// Saves `data` as a new version of `tag` under `secret`, following
    /// `rules`. A password's keys are derived once the checks that need no
    /// KDF have passed.
    pub(crate) async fn save_with(
        &self,
        tag: &str,
        data: Vec<u8>,
        secret: Secret<'_>,
        rules: SaveRules,
    ) -> Result<SaveReport, Error> {
        // Wiped on every way out: a check or a retry's probe that fails
        // (another save took a new tag, the loser of two at once) returns
        // with the file (a store key, for a key file) still held here.
        let mut data = zeroize::Zeroizing::new(data);
        check_new_tag(tag)?;
        // Anyone on the broker could load what an empty password guards.
        if let Secret::Password(password) = secret
            && password.expose_secret().is_empty()
        {
            return Err(Error::EmptyPassword);
        }
        let servers = self.servers().await?;
        let n = servers.len();
        let t = self.threshold_for(n)?;
        if t < rules.min_threshold {
            return Err(Error::KeyThresholdTooLow {
                servers: n,
                threshold: t,
            });
        }
        if rules.spare_server && self.options.threshold.is_none() && t == n && n > 1 {
            return Err(Error::KeyNoSpareServer { servers: n });
        }
        sharing::check_file_len(data.len() as u64, t)?;
        let needed = self.options.min_acks.unwrap_or(t).max(t);
        if needed > n {
            return Err(Error::NotEnoughServers { needed, servers: n });
        }
        // The KDF the records will name: the keys' own when derived ahead.
        let kdf = match secret {
            Secret::Keys(keys) => keys.kdf(),
            Secret::Password(_) => &self.options.kdf,
        };
        // What holds whatever the attempt: the options' own warnings.
        let mut warnings_before = Vec::new();
        if let Some(m) = self.options.min_acks
            && m < t
        {
            warnings_before.push(format!(
                "min_acks = {m} is below this save's threshold {t} (a save held by fewer \
                 could not be loaded): {t} acknowledgements were needed"
            ));
        }
        if let Err(Error::WeakKdf {
            setting,
            value,
            floor,
        }) = kdf.check_key_floor()
        {
            warnings_before.push(weak_kdf_warning(setting, value, floor));
        }
        // A password's keys, derived at the first attempt's store (after
        // its probe: a tag another save holds costs no KDF run) and used
        // again by any retry.
        let mut derived: Option<SaveKeys> = None;
        let mut floor = 1;
        let mut missed: Vec<String> = Vec::new();
        for attempt in 0..MAX_SAVE_ATTEMPTS {
            if attempt > 0 {
                // Saves that collided retry at random moments, so one of
                // them is ahead next time.
                let mut r = [0u8; 2];
                seccs_core::random_bytes(&mut r)?;
                let ms = u64::from(u16::from_le_bytes(r)) % (50 * attempt as u64) + 1;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            // A probe that no server answered fails the save: see
            // "A save's probe" in the module docs.
            let probe = self.probe_answered(tag, &servers).await?;
            // A server that did not answer the probe is unknown, not one
            // that refuses, unless it missed an earlier attempt's store too
            // (it is down, or too slow for this save).
            let quorum = Quorum {
                servers: n,
                t,
                needed,
                unknown: probe.silent.iter().filter(|s| !missed.contains(*s)).count(),
            };
            let (version, passed) = if rules.new_tag {
                // A retry follows refusals of version 1 that did not add up
                // to t (an exclusive save loses only to t of them) or left
                // too few acknowledgements: a save that ran at the same
                // time and rolled back, or servers that lie. The new probe
                // decides, as the first did: a save that won is listed by
                // at least t servers, and two exclusive saves cannot both
                // win (each needs more than half of the servers).
                (1, check_tag_unused(tag, &probe, quorum)?)
            } else {
                choose_version(tag, &probe, quorum, floor)?
            };
            // Only what holds for the attempt that succeeds is reported:
            // a claim an earlier attempt passed over may be gone since.
            let mut warnings = warnings_before.clone();
            for w in passed {
                if !warnings.contains(&w) {
                    warnings.push(w);
                }
            }
            // Servers that refuse the version for their own past (they
            // reported it or above): storing again there never helps.
            let claimed: Vec<String> = probe
                .highest
                .iter()
                .filter(|(_, high)| *high >= version)
                .map(|(server, _)| server.clone())
                .collect();
            let keys = match (secret, &mut derived) {
                (Secret::Keys(keys), _) => keys,
                (Secret::Password(_), Some(keys)) => &*keys,
                (Secret::Password(password), slot @ None) => {
                    &*slot.insert(self.save_keys(password).await?)
                }
            };
            match self
                .save_version(
                    tag,
                    std::mem::take(&mut *data),
                    keys,
                    &servers,
                    (t, needed),
                    version,
                    rules.new_tag,
                    &claimed,
                )
                .await?
            {
                Attempt::Saved(mut report) => {
                    report.warnings = warnings;
                    return Ok(report);
                }
                Attempt::Lost {
                    silent,
                    rolled_back,
                    plaintext,
                } => {
                    tracing::info!(tag, version, "another save took this version; retrying");
                    self.let_winner_store(tag, version, &servers, &rolled_back)
                        .await;
                    data = plaintext;
                    floor = version + 1;
                    missed.extend(silent);
                    missed.sort_unstable();
                    missed.dedup();
                }
            }
        }
        Err(Error::SaveConflict {
            tag: tag.to_owned(),
            attempts: MAX_SAVE_ATTEMPTS,
        })
    }

    /// One attempt of a save at `version` with threshold `t` and `needed`
    /// acknowledgements: the report, or [`Attempt::Lost`] when another save
    /// holds the version (this one's records are then removed again). With `exclusive`,
    /// t servers holding the version make it another's. `claimed`: the
    /// servers whose probe reported `version` or above, which a save that
    /// keeps the version does not ask again.
    #[allow(clippy::too_many_arguments)]
    async fn save_version(
        &self,
        tag: &str,
        plaintext: Vec<u8>,
        keys: &SaveKeys,
        servers: &[String],
        (t, needed): (usize, usize),
        version: u64,
        exclusive: bool,
        claimed: &[String],
    ) -> Result<Attempt, Error> {
        // Fragment i goes to the i-th server in the load's order, so the
        // servers a load asks first hold the ciphertext's own fragments.
        let ordered = load_order(tag, version, servers);
        let servers = ordered.as_slice();
        let n = servers.len();
        // The records are sent from where they lie (the encrypted file's
        // buffer) or as they are made (the recovery fragments, coded a
        // stripe at a time), never copied into one buffer each.
        let records = {
            let (tag, keys) = (tag.to_owned(), keys.clone());
            tokio::task::spawn_blocking(move || {
                sharing::split_into_parts(&tag, version, plaintext, &keys, n, t)
            })
            .await
            .map_err(|e| Error::io("split", std::io::Error::other(e.to_string())))??
        };
        if records.is_empty() {
            return Err(Error::NoServers);
        }
        let file_id = records.file_id();
        let record_bytes = records.record_len() as u64;
        let total = record_bytes * n as u64;
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = self.progress.clone();
        let report = move |bytes: u64| {
            let now = done.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed) + bytes;
            if let Some(p) = &progress {
                p(now.min(total), total);
            }
        };
        let parts = &records;
        let asks = servers.iter().enumerate().map(|(i, s)| {
            let report = &report;
            async move {
                let reply = self
                    .store_record(tag, version, parts, i, s, Some(report))
                    .await;
                (s.clone(), reply)
            }
        });
        let conflict = crate::message::conflict_reason(version);
        let (mut acked, mut conflicts, mut reasons) = (Vec::new(), 0usize, Vec::new());
        let (mut silent, mut not_stored) = (Vec::new(), Vec::new());
        for (server, reply) in join_all(asks).await {
            match reply {
                Ok(Body::Stored) => acked.push(server),
                Ok(Body::Refused { reason }) => {
                    // A server's words reach a terminal: escaped, so
                    // that they can neither forge a line nor send it a
                    // control sequence.
                    if reason == conflict {
                        conflicts += 1;
                    }
                    let reason = reason.escape_debug().to_string();
                    tracing::warn!(server, "store refused: {reason}");
                    reasons.push(format!("{server} refused: {reason}"));
                    not_stored.push(NotStored {
                        server,
                        why: reason,
                        answered: true,
                    });
                }
                Ok(other) => {
                    tracing::warn!(server, "unexpected reply to store: {other:?}");
                    reasons.push(format!("{server}: unexpected reply"));
                    not_stored.push(NotStored {
                        server,
                        why: "unexpected reply".into(),
                        answered: true,
                    });
                }
                Err(e) => {
                    tracing::warn!(server, "store failed: {e}");
                    reasons.push(format!("{server}: {e}"));
                    not_stored.push(NotStored {
                        server: server.clone(),
                        why: e.to_string(),
                        answered: false,
                    });
                    silent.push(server);
                }
            }
        }
        // With a conflict, another save holds the version on some servers: it
        // is this save's only with more than half of them (so not the other's).
        // An exclusive save must be the tag's only one: it loses to what at
        // least t servers refuse it for, as it is refused before it is
        // stored ([`check_tag_unused`]); fewer than t cannot stop it.
        let won = acked.len() >= needed
            && (conflicts == 0 || (2 * acked.len() > n && (!exclusive || conflicts < t)));
        if won {
            if conflicts > 0 {
                // Refused for a save that came after the probe: the loser
                // of a race, whose rollback gives the version back.
                let raced: Vec<usize> = not_stored
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| {
                        m.answered && m.why == conflict && !claimed.contains(&m.server)
                    })
                    .map(|(i, _)| i)
                    .collect();
                let stored = self
                    .store_again(tag, version, parts, servers, &mut not_stored, raced)
                    .await;
                acked.extend(stored);
            }
            return Ok(Attempt::Saved(SaveReport {
                version,
                servers: n,
                stored_on: acked.len(),
                threshold: t,
                record_bytes,
                warnings: Vec::new(),
                not_stored,
            }));
        }
        let not_rolled_back = self.roll_back(servers, &acked, tag, version, file_id).await;
        if conflicts > 0 {
            let plaintext = tokio::task::spawn_blocking(move || {
                records.into_plaintext().map(zeroize::Zeroizing::new)
            })
            .await
            .map_err(|e| Error::io("decrypt", std::io::Error::other(e.to_string())))??;
            return Ok(Attempt::Lost {
                silent,
                rolled_back: acked,
                plaintext,
            });
        }
        Err(Error::SaveIncomplete {
            acked: acked.len(),
            needed,
            servers: n,
            version,
            reasons,
            not_rolled_back,
        })
    }

    /// After this save lost `version` of `tag` and rolled back its records
    /// on `rolled_back`: waits, at most [`LOSER_WAIT`], while more than half
    /// of `servers` hold one other save of that version (the winner) and
    /// some of `rolled_back` do not yet. The winner stores its record there
    /// again once this save's is gone ([`RACE_RETRY_WAITS_MS`]); this
    /// save's next version stored there first would make them refuse it for
    /// good (a server refuses a version below the highest it holds). No
    /// winner (both saves lost), or a winner that does not store again (a
    /// client of an older build), costs at most the wait.
    async fn let_winner_store(
        &self,
        tag: &str,
        version: u64,
        servers: &[String],
        rolled_back: &[String],
    ) {
        if rolled_back.is_empty() {
            return;
        }
        let deadline = Instant::now() + LOSER_WAIT;
        for _ in 0..256 {
            let Ok(probe) = timeout_at(deadline, self.probe(tag, servers)).await else {
                return;
            };
            let winner = probe
                .saves
                .get(&version)
                .and_then(|saves| saves.iter().find(|s| 2 * s.servers.len() > servers.len()));
            let Some(winner) = winner else {
                return;
            };
            if rolled_back.iter().all(|s| winner.servers.contains(s)) {
                return;
            }
            if Instant::now() + Duration::from_millis(50) >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends record `i` of `parts`, of `version` of `tag`, to `server` and
    /// returns its answer.
    async fn store_record(
        &self,
        tag: &str,
        version: u64,
        parts: &sharing::SplitRecords,
        i: usize,
        server: &str,
        progress: Option<&(dyn Fn(u64) + Send + Sync)>,
    ) -> Result<Body, Error> {
        let (record_head, fragment) = parts.record(i).ok_or(Error::NoServers)?;
        let request_id = RequestId::random()?;
        let mut head = Message::encode_store_head(
            request_id,
            tag,
            version,
            record_head.len() + fragment.len(),
        );
        head.extend_from_slice(record_head);
        self.ask_encoded(server, request_id, &head, &fragment, progress)
            .await
    }

    /// Stores the records of a save that kept `version` again on the
    /// servers `not_stored[raced]`, which refused it for another save's
    /// record (see "The save that keeps N" in the module docs): after each
    /// of [`RACE_RETRY_WAITS_MS`], until each stores it or answers anything
    /// but "version exists". `servers` is the save's order (record i goes
    /// to `servers[i]`). Those that store it leave `not_stored` and are
    /// returned; the others' reasons there say what they answered last.
    async fn store_again(
        &self,
        tag: &str,
        version: u64,
        parts: &sharing::SplitRecords,
        servers: &[String],
        not_stored: &mut Vec<NotStored>,
        mut raced: Vec<usize>,
    ) -> Vec<String> {
        let conflict = crate::message::conflict_reason(version);
        let mut stored = Vec::new();
        for wait in RACE_RETRY_WAITS_MS {
            if raced.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let asks = raced.iter().map(|&m| {
                let server = not_stored[m].server.clone();
                async move {
                    let reply = match servers.iter().position(|s| *s == server) {
                        Some(i) => {
                            self.store_record(tag, version, parts, i, &server, None)
                                .await
                        }
                        None => Err(Error::NoServers),
                    };
                    (m, reply)
                }
            });
            let mut still = Vec::new();
            for (m, reply) in join_all(asks).await {
                let miss = &mut not_stored[m];
                match reply {
                    Ok(Body::Stored) => {
                        tracing::info!(
                            server = miss.server,
                            "stored after another save's claim was gone"
                        );
                        stored.push(miss.server.clone());
                    }
                    Ok(Body::Refused { reason }) if reason == conflict => still.push(m),
                    Ok(Body::Refused { reason }) => {
                        miss.why = reason.escape_debug().to_string();
                    }
                    Ok(other) => {
                        tracing::warn!(
                            server = miss.server,
                            "unexpected reply to store: {other:?}"
                        );
                        miss.why = "unexpected reply".into();
                    }
                    Err(e) => {
                        miss.why = e.to_string();
                        miss.answered = false;
                    }
                }
            }
            raced = still;
        }
        for &m in &raced {
            let total: u64 = RACE_RETRY_WAITS_MS.iter().sum();
            not_stored[m].why = format!(
                "{conflict}: another save of the tag stored it there after this save chose \
                 it, and the server still refused it after {} more tries over {:.1} s (the \
                 other save did not remove its record); `share check` shows what each server \
                 holds",
                RACE_RETRY_WAITS_MS.len(),
                total as f64 / 1000.0
            );
        }
        not_stored.retain(|m| !stored.contains(&m.server));
        stored
    }

    /// Rolls back the save `file_id` of `version` of `tag` on every server
    /// in `servers`. Those that did not acknowledge it may still get its
    /// store request late (a server paused or slow: the broker holds the
    /// request for it) and must not keep the record then: they are sent the
    /// rollback too, which they remember, without waiting for their answer.
    /// The servers in `acked` are answering and are waited for. Returns the
    /// servers the rollback did not reach: those in `acked` that did not
    /// confirm it, and the others it could not be sent to.
    async fn roll_back(
        &self,
        servers: &[String],
        acked: &[String],
        tag: &str,
        version: u64,
        file_id: [u8; 16],
    ) -> Vec<String> {
        let body = || Body::Rollback {
            tag: tag.to_owned(),
            version,
            file_id,
        };
        let late = servers.iter().filter(|s| !acked.contains(s)).map(|s| {
            let b = body();
            async move {
                let sent = self.tell(s, b).await;
                if let Err(e) = &sent {
                    tracing::warn!(server = s, "rollback not sent: {e}");
                }
                (s, sent.is_ok())
            }
        });
        let (answers, sent) =
            futures::future::join(self.ask_all(acked, body), join_all(late)).await;
        let mut missed = Vec::new();
        for (server, reply) in answers {
            match reply {
                Ok(Body::Deleted { .. }) => {}
                Ok(other) => {
                    tracing::warn!(server, "unexpected reply to rollback: {other:?}");
                    missed.push(server);
                }
                Err(e) => {
                    tracing::warn!(server, "rollback failed: {e}");
                    missed.push(server);
                }
            }
        }
        missed.extend(
            sent.into_iter()
                .filter(|(_, sent)| !sent)
                .map(|(s, _)| s.clone()),
        );
        missed
    }

    /// Sends the request `body` to `server` without waiting for its answer.
    async fn tell(&self, server: &str, body: Body) -> Result<(), Error> {
        let message = Message {
            request_id: RequestId::random()?,
            body,
        };
        let deadline = deadline_after(self.options.timeout);
        let (head, record) = message.encode_parts();
        self.send_before(deadline, server, (&head, &record), None)
            .await
    }

    /// Sends the encoded request `head` then `record` (see
    /// [`Message::encode_parts`]) to `server`, failing with a timeout at
    /// `deadline`.
    async fn send_before(
        &self,
        deadline: Instant,
        server: &str,
        (head, tail): (&[u8], &dyn Tail),
        progress: Option<&(dyn Fn(u64) + Send + Sync)>,
    ) -> Result<(), Error> {
        timeout_at(
            deadline,
            self.endpoint.send_parts(server, head, tail, progress),
        )
        .await
        .map_err(|_| Error::Timeout(server.to_owned()))?
    }

    /// Loads `version` of `tag`, or the latest when `None`: the newest
    /// version that at least t servers hold (t its save's threshold, as its
    /// records' headers say). Newer versions that fewer hold are passed
    /// over and named in [`LoadReport::passed_over`]. When the latest
    /// cannot be rebuilt (a wrong password, altered records, servers gone
    /// since), the load fails with [`Error::LatestUnavailable`], naming it
    /// and the next older version: nothing older is returned in its place
    /// (see [`Client::load_or_older`]).
    ///
    /// Only t servers are asked for records when the servers agree on one
    /// save of the version ([`LoadReport::asked_servers`] names those
    /// asked), so a record altered on a server not asked goes unseen:
    /// [`Client::check`] reads every server's.
    pub async fn load(
        &self,
        tag: &str,
        version: Option<u64>,
        password: &Password,
    ) -> Result<LoadReport, Error> {
        self.load_with(tag, version, password, false).await
    }

    /// Loads the newest version of `tag` that rebuilds: versions that enough
    /// servers hold are tried from the newest down (at most
    /// [`MAX_LOAD_ATTEMPTS`]), and each newer one that failed is named in
    /// [`LoadReport::newer_failed`].
    pub async fn load_or_older(&self, tag: &str, password: &Password) -> Result<LoadReport, Error> {
        self.load_with(tag, None, password, true).await
    }

    async fn load_with(
        &self,
        tag: &str,
        version: Option<u64>,
        password: &Password,
        or_older: bool,
    ) -> Result<LoadReport, Error> {
        check_tag(tag)?;
        let servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        if let Some(version) = version {
            let probe = self.probe(tag, &servers).await;
            let save = probe.sole_save(version);
            return match self
                .load_version(tag, version, &servers, save, password)
                .await
            {
                Err(Error::Decrypt) => Err(self.decrypt_error(tag, version).await),
                other => other,
            };
        }
        let probe = self.probe_answered(tag, &servers).await?;
        let listed = probe.versions();
        let held: Vec<u64> = listed
            .iter()
            .rev()
            .copied()
            .filter(|v| probe.held(*v))
            .collect();
        let Some(&newest) = held.first() else {
            // No version is held by enough servers: the newest listed says
            // what is missing, as a load of it would. With none readable,
            // the newest that servers hold unreadable records of does: the
            // tag is held (`share ls` lists it), and the load fails naming
            // those records and why (altered, or a newer seccs's format).
            let newest_listed = listed
                .last()
                .or_else(|| probe.unreadable.keys().next_back());
            return match newest_listed {
                None => Err(Error::NotFound(tag.to_owned())),
                Some(&v) => self.load_version(tag, v, &servers, None, password).await,
            };
        };
        let passed_over: Vec<(u64, String)> = listed
            .iter()
            .rev()
            .take_while(|v| **v > newest)
            .take(MAX_LOAD_ATTEMPTS)
            .map(|v| (*v, probe.shortfall(*v)))
            .collect();
        for (v, why) in &passed_over {
            tracing::warn!("{tag}@{v} passed over: {why}");
        }
        if !or_older
            && let Some((version, reason)) = passed_over
                .iter()
                .find_map(|(v, _)| Some((*v, probe.altered(*v)?)))
        {
            return Err(Error::LatestUnavailable {
                tag: tag.to_owned(),
                version,
                decrypt: false,
                reason,
                older: Some(newest),
            });
        }
        if !or_older {
            let save = probe.sole_save(newest);
            return match self
                .load_version(tag, newest, &servers, save, password)
                .await
            {
                Ok(mut report) => {
                    report.passed_over = passed_over;
                    Ok(report)
                }
                Err(e) => Err(Error::LatestUnavailable {
                    tag: tag.to_owned(),
                    version: newest,
                    decrypt: e.is_decrypt(),
                    reason: match e {
                        Error::Decrypt => "wrong password, or its records were altered or \
                                           saved with another password"
                            .into(),
                        e => e.to_string(),
                    },
                    older: held.get(1).copied(),
                }),
            };
        }
        let mut failed: Vec<(u64, Error)> = Vec::new();
        for &v in held.iter().take(MAX_LOAD_ATTEMPTS) {
            match self
                .load_version(tag, v, &servers, probe.sole_save(v), password)
                .await
            {
                Ok(mut report) => {
                    report.newer_failed = failed
                        .into_iter()
                        .map(|(n, e)| (n, e.to_string()))
                        .collect();
                    report.passed_over = passed_over;
                    return Ok(report);
                }
                Err(e) => {
                    tracing::warn!("{tag}@{v} could not be rebuilt ({e}); trying an older version");
                    failed.push((v, e));
                    let decrypt = failed.iter().filter(|(_, e)| e.is_decrypt()).count();
                    if decrypt >= MAX_DECRYPT_FAILURES {
                        break;
                    }
                }
            }
        }
        // Nothing rebuilt: a decryption failure says the most (the password).
        let pick = failed.iter().position(|(_, e)| e.is_decrypt()).unwrap_or(0);
        if pick >= failed.len() {
            return Err(Error::NotFound(tag.to_owned()));
        }
        let (version, e) = failed.swap_remove(pick);
        Err(match e {
            Error::Decrypt => self.decrypt_error(tag, version).await,
            e => e,
        })
    }

    /// The error of `version` of `tag` that did not decrypt: it names the
    /// version, and the one below it in case this one is someone else's (a
    /// listing failure only loses the hint).
    async fn decrypt_error(&self, tag: &str, version: u64) -> Error {
        let servers = self.servers().await.unwrap_or_default();
        let listed = self.probe(tag, &servers).await.versions();
        Error::DecryptVersion {
            tag: tag.to_owned(),
            version,
            older: listed.iter().rev().copied().find(|v| *v < version),
        }
    }

    /// Fetches and rebuilds `version` of `tag`.
    ///
    /// When the probe found one save of the version that its t servers
    /// hold (`save`), only t of them are asked ([`first_asked`]): a load
    /// receives about the file's size, not n/t times it. The first of them
    /// is asked alone, and the password's keys are derived from its record
    /// while the others send theirs ([`Self::fetch_deriving_ahead`]). When
    /// one of them sends no record, the other servers are asked too, and
    /// the load goes on with every record; when their records do not
    /// rebuild the file (a record altered, a wrong password), the other
    /// servers are asked for theirs, and the load rebuilds from every
    /// record, those first t kept ([`Received`]) and the password's keys
    /// derived once for both ([`KeyDeriver`]): it fails or succeeds as one
    /// that asked all of the servers at once. Without such a save (two
    /// saves of the version, an unreadable record, too few holders) every
    /// server online is asked at once.
    async fn load_version(
        &self,
        tag: &str,
        version: u64,
        servers: &[String],
        save: Option<&ClaimedSave>,
        password: &Password,
    ) -> Result<LoadReport, Error> {
        let deriver = KeyDeriver::new(password);
        let mut received = Received::new(version);
        // The servers asked so far, when the records they sent are to be
        // rebuilt from below.
        let mut asked: Option<Vec<String>> = None;
        if let Some(save) = save {
            let t = usize::from(save.t);
            let first = first_asked(tag, version, &save.servers, t);
            self.fetch_deriving_ahead(tag, version, &first, &mut received, &deriver)
                .await;
            let whole = received.held() >= t;
            if whole {
                let (rebuilt, back) = rebuild_blocking(tag, received, &deriver, first.len()).await;
                match rebuilt {
                    Ok(rebuilt) => return Ok(load_report(rebuilt, version, first)),
                    Err(e) => tracing::warn!(
                        "{tag}@{version} did not rebuild from the {t} records asked for first \
                         ({e}); asking the other servers"
                    ),
                }
                received = back;
            }
            // A rebuild that used the records before it failed (a
            // ciphertext that does not open) left none: then every server
            // is asked afresh, below, so that it fails as a load of all.
            if !whole || received.held() > 0 {
                let rest: Vec<String> = servers
                    .iter()
                    .filter(|s| !first.contains(s))
                    .cloned()
                    .collect();
                received.add(self.fetch(tag, version, &rest).await.records);
                asked = Some(first.into_iter().chain(rest).collect());
            }
        }
        let asked = match asked {
            Some(asked) => asked,
            None => {
                received.add(self.fetch(tag, version, servers).await.records);
                servers.to_vec()
            }
        };
        let (rebuilt, _) = rebuild_blocking(tag, received, &deriver, asked.len()).await;
        Ok(load_report(rebuilt?, version, asked))
    }

    /// Asks `servers` for their records of `version` of `tag` into
    /// `received`: the first alone, then the others while the password's
    /// keys are derived from the first record's manifest. The KDF (64 MiB
    /// by default) then runs while the load holds one record, not all of
    /// them, since over one broker connection the records of servers asked
    /// together arrive interleaved and are whole only at the end. The
    /// other records still come over the same connection, so the load
    /// waits for one server's reply more, not for the KDF.
    async fn fetch_deriving_ahead(
        &self,
        tag: &str,
        version: u64,
        servers: &[String],
        received: &mut Received,
        deriver: &KeyDeriver,
    ) {
        let (lead, others) = servers.split_at(servers.len().min(1));
        received.add(self.fetch(tag, version, lead).await.records);
        let ahead = received.first_key_salt().map(|salt| {
            let deriver = deriver.clone();
            tokio::task::spawn_blocking(move || deriver.derive_ahead(&salt))
        });
        received.add(self.fetch(tag, version, others).await.records);
        if let Some(ahead) = ahead
            && let Err(e) = ahead.await
        {
            // The rebuild derives the keys itself when this did not.
            tracing::debug!("deriving the password keys ahead did not finish: {e}");
        }
    }

    /// Asks `servers` for their record of `version` of `tag`.
    async fn fetch(&self, tag: &str, version: u64, servers: &[String]) -> Fetched {
        let mut fetched = Fetched::default();
        for (server, reply) in self
            .ask_all(servers, || Body::Fetch {
                tag: tag.to_owned(),
                version,
            })
            .await
        {
            match reply {
                Ok(Body::Fetched { record: Some(r) }) => fetched.records.push((server, r)),
                Ok(Body::Fetched { record: None }) => fetched.without_record.push(server),
                Ok(other) => {
                    tracing::warn!(server, "unexpected reply to fetch: {other:?}");
                    fetched
                        .silent
                        .push((server, "it answered with something else".into()));
                }
                Err(e) => {
                    tracing::warn!(server, "fetch failed: {e}");
                    fetched.silent.push((server, e.to_string()));
                }
            }
        }
        fetched
    }

    /// Fetches `version` of `tag` (the newest that enough servers hold, when
    /// `None`) from every server online and checks every record against
    /// the save's authentic manifest, as a load that asked every server
    /// does: what a load that asks only t servers does not see (a server
    /// whose record was altered, or lost) is found here. Fails as such a
    /// load fails when the version does not rebuild (too few authentic
    /// records, a wrong password); the rebuilt file is dropped.
    pub async fn check(
        &self,
        tag: &str,
        version: Option<u64>,
        password: &Password,
    ) -> Result<CheckReport, Error> {
        check_tag(tag)?;
        let servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let version = match version {
            Some(v) => v,
            None => {
                let probe = self.probe_answered(tag, &servers).await?;
                let listed = probe.versions();
                match listed.iter().rev().find(|v| probe.held(**v)) {
                    Some(v) => *v,
                    None => *listed
                        .last()
                        .ok_or_else(|| Error::NotFound(tag.to_owned()))?,
                }
            }
        };
        let fetched = self.fetch(tag, version, &servers).await;
        let received = Received::of(version, fetched.records);
        let deriver = KeyDeriver::new(password);
        let rebuilt = match rebuild_blocking(tag, received, &deriver, servers.len())
            .await
            .0
        {
            Err(Error::Decrypt) => return Err(self.decrypt_error(tag, version).await),
            other => other?,
        };
        Ok(CheckReport {
            version,
            n: rebuilt.n,
            t: rebuilt.t,
            authentic: rebuilt.authentic,
            bad: rebuilt.bad_reasons,
            superseded: rebuilt.superseded,
            repeated: rebuilt.repeated,
            without_record: fetched.without_record,
            silent: fetched.silent,
        })
    }

    /// Removes `version` of `tag`, or every version; returns how many
    /// servers removed something.
    pub async fn remove(&self, tag: &str, version: Option<u64>) -> Result<usize, Error> {
        Ok(self.remove_report(tag, version).await?.removed_from)
    }

    /// Removes `version` of `tag`, or every version, from the servers
    /// online. Servers offline keep what they hold, and it comes back with
    /// them: the report says how many servers a removed version was saved
    /// to, when the servers told.
    pub async fn remove_report(
        &self,
        tag: &str,
        version: Option<u64>,
    ) -> Result<RemoveReport, Error> {
        check_tag(tag)?;
        let servers = self.servers().await?;
        if servers.is_empty() {
            return Err(Error::NoServers);
        }
        let probe = self.probe(tag, &servers).await;
        let saved_to = probe
            .saves
            .iter()
            .filter(|(v, _)| version.is_none_or(|x| x == **v))
            .flat_map(|(_, saves)| saves.iter().map(|s| usize::from(s.n)))
            .max();
        let mut removed = 0;
        for (server, reply) in self
            .ask_all(&servers, || Body::Delete {
                tag: tag.to_owned(),
                version,
            })
            .await
        {
            match reply {
                Ok(Body::Deleted { removed: r }) if r > 0 => removed += 1,
                Ok(Body::Deleted { .. }) => {}
                Ok(other) => tracing::warn!(server, "unexpected reply to delete: {other:?}"),
                Err(e) => tracing::warn!(server, "delete failed: {e}"),
            }
        }
        if removed == 0 {
            return Err(Error::NotFound(match version {
                Some(v) => format!("{tag}@{v}"),
                None => tag.to_owned(),
            }));
        }
        Ok(RemoveReport {
            removed_from: removed,
            asked: servers.len(),
            saved_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(highest: &[u64], listed: &[(u64, &[usize])]) -> Probe {
        let mut probe = Probe {
            highest: highest
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("s{i}"), *v))
                .collect(),
            ..Probe::default()
        };
        for (version, servers) in listed {
            probe.saves.entry(*version).or_default().push(ClaimedSave {
                n: 3,
                t: 2,
                servers: servers.iter().map(|i| format!("s{i}")).collect(),
            });
        }
        probe
    }

    /// A save to `servers` with the default threshold.
    fn quorum(servers: usize) -> Quorum {
        Quorum {
            servers,
            t: servers / 2 + 1,
            needed: servers / 2 + 1,
            unknown: 0,
        }
    }

    #[test]
    fn the_next_version_follows_what_t_servers_report() -> Result<(), Error> {
        assert_eq!(
            choose_version("t", &probe(&[], &[]), quorum(3), 1)?,
            (1, vec![])
        );
        assert_eq!(
            choose_version("t", &probe(&[2, 2, 2], &[]), quorum(3), 1)?,
            (3, vec![])
        );
        // A retry after a conflict starts at its floor.
        assert_eq!(
            choose_version("t", &probe(&[2, 2, 2], &[]), quorum(3), 5)?,
            (5, vec![])
        );
        // A version above the largest never counts, and is named.
        let (v, warnings) = choose_version("t", &probe(&[2, u64::MAX, 2], &[]), quorum(3), 1)?;
        assert_eq!(v, 3);
        assert!(
            warnings.len() == 1 && warnings[0].contains("server s1 holds t@18446744073709551615"),
            "{warnings:?}"
        );
        Ok(())
    }

    #[test]
    fn one_server_claiming_a_high_version_neither_spends_the_tag_nor_blocks_it() -> Result<(), Error>
    {
        // Claims of one server of three, with threshold 2: passed over and
        // named, save after save.
        for lie in [MAX_VERSION - 1, MAX_VERSION, 1_000_000] {
            for (high, next) in [(1, 2), (2, 3), (41, 42)] {
                let (v, warnings) =
                    choose_version("t", &probe(&[high, lie, high], &[]), quorum(3), 1)?;
                assert_eq!(v, next, "claim {lie}");
                assert!(
                    warnings.len() == 1
                        && warnings[0].contains("s1 reports t up to version")
                        && warnings[0].contains("fewer than 2 servers online"),
                    "{warnings:?}"
                );
            }
        }
        // A server listing records at will moves the version up by at most
        // MAX_STRAY_SKIP.
        let mut liar = probe(&[1, MAX_VERSION - 1, 1], &[]);
        for version in 2..5000 {
            liar.saves.entry(version).or_default().push(ClaimedSave {
                n: 1,
                t: 1,
                servers: vec!["s1".into()],
            });
        }
        let (v, warnings) = choose_version("t", &liar, quorum(3), 1)?;
        assert_eq!(v, 2 + MAX_STRAY_SKIP);
        assert!(warnings[0].contains("s1 reports"), "{warnings:?}");
        Ok(())
    }

    #[test]
    fn a_claim_of_t_servers_at_the_largest_version_ends_the_tag_and_says_why() -> Result<(), Error>
    {
        match choose_version(
            "t",
            &probe(&[MAX_VERSION, MAX_VERSION, 4], &[]),
            quorum(3),
            1,
        ) {
            Err(e @ Error::VersionExhausted { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("on s0, s1 (at least 2 servers")
                        && text.contains("Removing its versions does not free their numbers")
                        && text.contains("save under another tag"),
                    "{text}"
                );
            }
            other => panic!("expected VersionExhausted, got {other:?}"),
        }
        // Fewer than t servers at the largest, even just above the others,
        // are passed over.
        let (v, warnings) = choose_version(
            "t",
            &probe(&[MAX_VERSION - 3, MAX_VERSION, MAX_VERSION - 3], &[]),
            quorum(3),
            1,
        )?;
        assert_eq!(v, MAX_VERSION - 2);
        assert!(warnings[0].contains("s1 reports"), "{warnings:?}");
        // Fewer than t servers at the largest, but the save cannot do
        // without them: it says so, and what helps.
        match choose_version("t", &probe(&[1, MAX_VERSION], &[]), quorum(2), 1) {
            Err(e @ Error::VersionsClaimed { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains(
                        "version 4294967295, the largest a server stores, is claimed by s1"
                    ) && text.contains("Bring more servers online"),
                    "{text}"
                );
            }
            other => panic!("expected VersionsClaimed, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_version_a_server_holds_a_record_of_is_not_given_to_another_save() -> Result<(), Error> {
        // A save that reached 2 of 5 servers (its t was 3) and stopped: they
        // hold version 4. The next save takes 5, which every server accepts.
        let half_done = probe(&[4, 4, 3, 3, 3], &[(4, &[0, 1])]);
        assert_eq!(choose_version("t", &half_done, quorum(5), 1)?, (5, vec![]));
        // Saved 2-of-2 while two servers of four were offline: two servers
        // hold version 2, fewer than this save's t (3), yet they are needed
        // (two others would not be enough) and hold its records.
        let smaller_t = probe(&[2, 2, 1, 1], &[(1, &[0, 1, 2, 3]), (2, &[0, 1])]);
        assert_eq!(choose_version("t", &smaller_t, quorum(4), 1)?, (3, vec![]));
        // Versions removed from two servers while the others were offline:
        // they refuse anything up to their highest, which is followed.
        let removed = probe(&[7, 7, 0, 0, 0], &[]);
        assert_eq!(choose_version("t", &removed, quorum(5), 1)?, (8, vec![]));
        // Far above, it is passed over when the other servers are enough,
        // and followed when the save needs those servers.
        let far = 5000;
        let (v, warnings) = choose_version("t", &probe(&[far, far, 0, 0, 0], &[]), quorum(5), 1)?;
        assert_eq!(v, 1);
        assert!(
            warnings.len() == 1 && warnings[0].contains("s0, s1 report t up to version 5000"),
            "{warnings:?}"
        );
        let needed = probe(&[far, far, 0, 0], &[]);
        assert_eq!(
            choose_version("t", &needed, quorum(4), 1)?,
            (far + 1, vec![])
        );
        Ok(())
    }

    #[test]
    fn a_claim_at_the_largest_version_does_not_hide_a_half_done_save_below_it() -> Result<(), Error>
    {
        // Three servers of five report MAX_VERSION - 3; a save that reached
        // s3 alone holds MAX_VERSION - 2 there, and s4 claims the largest.
        let near_end = probe(
            &[
                MAX_VERSION - 3,
                MAX_VERSION - 3,
                MAX_VERSION - 3,
                MAX_VERSION - 2,
                MAX_VERSION,
            ],
            &[(MAX_VERSION - 2, &[3])],
        );
        let (v, warnings) = choose_version("t", &near_end, quorum(5), 1)?;
        assert_eq!(
            v,
            MAX_VERSION - 1,
            "the half-done save's version given again"
        );
        assert!(
            warnings.len() == 1 && warnings[0].contains("s4 reports t up to version 4294967295"),
            "{warnings:?}"
        );
        Ok(())
    }

    #[test]
    fn a_save_that_needs_the_servers_of_a_far_claim_follows_the_records_just_above_it()
    -> Result<(), Error> {
        // Four acknowledgements of five servers are needed, so s0 (highest
        // 5000) is; s1 holds a record of 5001 that a save of a lower
        // threshold, or one that reached too few servers, left.
        let far = 5000;
        let quorum = Quorum {
            servers: 5,
            t: 3,
            needed: 4,
            unknown: 0,
        };
        let needed = probe(&[far, far + 1, 0, 0, 0], &[(far + 1, &[1])]);
        assert_eq!(
            choose_version("t", &needed, quorum, 1)?,
            (far + 2, vec![]),
            "a version s1 holds a record of given to another save"
        );
        Ok(())
    }

    #[test]
    fn a_save_passing_over_a_save_that_loads_take_as_the_latest_says_so() -> Result<(), Error> {
        // s3 and s4 saved 2,000 versions 2-of-2 while the three others were
        // offline; all five are back, and this save's threshold is 3.
        let mut partitioned = probe(&[10, 10, 10, 2010, 2010], &[(10, &[0, 1, 2, 3, 4])]);
        for version in 11..=2010 {
            partitioned
                .saves
                .entry(version)
                .or_default()
                .push(ClaimedSave {
                    n: 2,
                    t: 2,
                    servers: vec!["s3".into(), "s4".into()],
                });
        }
        let (v, warnings) = choose_version("t", &partitioned, quorum(5), 1)?;
        assert_eq!(v, 11 + MAX_STRAY_SKIP);
        // A load of the latest takes t@2010, which enough servers for its
        // save hold: this save is not what it returns.
        assert!(
            warnings.iter().any(|w| w.contains("s3, s4 hold t@2010")
                && w.contains("a load of t without a version takes")
                && w.contains("another save of this save's version")),
            "{warnings:?}"
        );
        // A liar's claim, with no save of it held, says nothing of loads.
        let (_, warnings) = choose_version("t", &probe(&[1, 5000, 1], &[]), quorum(3), 1)?;
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        Ok(())
    }
}
