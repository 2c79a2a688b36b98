//! Mirroring one store into another under the same key: what `seccs copy`
//! does to move a store to another backend, or to keep a copy of it up to
//! date elsewhere.
//!
//! Node keys are deterministic under one store key and one set of
//! parameters (chunk size, wrapper), and catalog keys under one store key,
//! so a store's entries can be copied as they are stored, each with its
//! count, into another store of the same key and parameters: nothing is
//! opened to be sealed again, and nothing is chunked again. [`mirror`]
//! makes the destination's entries exactly the source's, after a search
//! for the destination's versions of its own (see below), in four passes
//! whose memory is bounded by its batch [`Limits`] (no set of every key is
//! held), after a verify of the source (whose memory, as `seccs verify`'s,
//! grows with the number of nodes); the records with pages, one per name
//! with more versions than a record holds inline, are held until the other
//! records are written:
//!
//! 1. every node of the source, in batches: each batch's keys are looked
//!    up in the destination, and the entries that are absent there, or
//!    whose value or count differs, are written;
//! 2. every catalog record of the source with its pages, the same way,
//!    once every node is there: at any moment of a mirror cut off part
//!    way, every catalog record the destination holds refers to nodes it
//!    holds (pages no record lists are not copied: nothing reads them);
//! 3. every catalog record of the destination that the source does not
//!    hold (looked up in the source in batches) is removed: names'
//!    records first, each read whole (with its pages) for the versions it
//!    held, then the pages left;
//! 4. then every node of the destination the source does not hold.
//!
//! Run again after an interruption, the passes finish the mirror; run
//! again on a mirror up to date, they write nothing. The destination is an
//! exact mirror only once [`mirror`] returns a report without findings.
//!
//! The source is verified first ([`Store::verify`]): an entry that
//! authenticates on its own can still be damage a mirror must not spread
//! (a node another lost, a page rolled back to an older one that its
//! name's record no longer lists, a count changed). Where verify finds
//! damage, the mirror *rescues* instead, and reports verify's findings
//! ([`MirrorReport::source_damage`]). A destination that holds entries is
//! left as it was: its entries may be the only good copies of what the
//! source lost, and adding to it would leave its counts short (a record
//! added that refers to a node it holds does not raise that node's
//! count). Into an empty destination it copies every entry that
//! authenticates, but those verify names and their pages. Orphans
//! (nodes and pages nothing refers to, which `gc` removes) and records of
//! a newer seccs are not damage.
//!
//! Nothing is copied unauthenticated: a node must open under the source's
//! key at some height (as [`Store::verify`] opens it), a catalog record
//! must open under its catalog key, and a name's record is copied with its
//! pages, in one batch (so on a backend with transactions a copy cut off
//! part way never leaves a record beside pages of another time). An entry
//! that does not authenticate, or that the source's backend cannot decode,
//! is not copied but reported ([`MirrorFinding`]), and the destination
//! keeps what it held under that key; the rest is copied. A damaged source
//! never makes a silently damaged mirror.
//!
//! A mirror never removes, unasked, what only the destination can hold:
//! versions the source does not hold, put into the destination after the
//! newest version of the source, or after the newest version the source
//! had at the last mirror into it where the caller knows that time
//! ([`Newer::Refuse`]), whichever is earlier. Before anything is written,
//! the newest time of the source's versions is read from its names'
//! records, and the destination's records are searched for versions put
//! later; where there are any, the mirror is refused
//! ([`MirrorError::DestNewer`]) unless the caller chose [`Newer::Remove`].
//! Such versions mean the destination was written to directly (a failover
//! to the mirror, found by the time of the last mirror even where the
//! source was written to since), the source was restored from an older
//! backup, or the two stores were given the wrong way round; or, the one
//! false alarm, that the source's newest versions were removed since the
//! last mirror. A source restored from an older backup and written to
//! since cannot be told from one whose versions were removed: the mirror
//! removes the versions it lost. Times are the putting machine's clock in
//! seconds, so a version put within the second of that time, or under a
//! clock set behind, is taken for older.
//!
//! The caller holds both stores as a writer would (their directory locks
//! and writer leases); [`mirror`] holds both stores' writer locks in this
//! process while it runs.

use rayon::prelude::*;
use serde::Serialize;

use std::collections::{HashMap, HashSet};

use crate::backend::{Backend, BackendError, Batch, Entry};
use crate::catalog::{self, EntryKind};
use crate::error::StoreError;
use crate::params::ContentRef;
use crate::store::Store;
use crate::verify::Finding;

/// Most bytes of keys and values read from the source before a batch is
/// checked against the destination and written.
pub const BATCH_BYTES: usize = 8 << 20;
/// Most entries in one batch.
pub const BATCH_ENTRIES: usize = 4096;
/// How many batches of keys to remove a walk of the destination gathers
/// before it stops for them to be removed (the destination is not written
/// while it is walked, so each stop means a new walk, and an S3 walk reads
/// every object): keys only, about 15 MiB at the default batch size.
const PRUNE_BATCHES_PER_WALK: usize = 64;

/// How large a batch grows (see [`BATCH_BYTES`], [`BATCH_ENTRIES`]): what
/// a mirror holds in memory at once is about twice a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of keys and values in one batch.
    pub batch_bytes: usize,
    /// Most entries in one batch (at least 1).
    pub batch_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            batch_bytes: BATCH_BYTES,
            batch_entries: BATCH_ENTRIES,
        }
    }
}

/// The pass a mirror is in, for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Verifying the source before anything is written.
    CheckingSource,
    /// Looking for the destination's versions of its own (see [`Newer`]).
    CheckingNewer,
    /// Copying the source's nodes.
    Nodes,
    /// Copying the source's catalog records.
    Records,
    /// Removing the destination's catalog records the source lacks.
    StaleRecords,
    /// Removing the destination's nodes the source lacks.
    StaleNodes,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::CheckingSource => "verifying the store copied",
            Phase::CheckingNewer => "looking for versions newer in the destination",
            Phase::Nodes => "copying nodes",
            Phase::Records => "copying catalog records",
            Phase::StaleRecords => "removing stale catalog records",
            Phase::StaleNodes => "removing stale nodes",
        })
    }
}

/// What a mirror does with destination versions put after the source's
/// newest, that the source does not hold (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newer {
    /// Refuse the mirror before anything is written, naming them. Where the
    /// destination is a mirror kept before, `last_copy` is when the newest
    /// version of the source was put at the last mirror into it (what
    /// `seccs copy` records in the destination's directory): versions put
    /// after it that the source does not hold are refused too, however
    /// new the source's versions are since.
    Refuse {
        /// When the source's newest version was put at the last mirror
        /// into the destination (seconds since the Unix epoch), if known.
        last_copy: Option<u64>,
    },
    /// Remove them, as any other version the source does not hold.
    Remove,
}

impl Newer {
    /// With [`Newer::Refuse`], the time after which the destination's
    /// versions that the source does not hold are refused, for a source
    /// whose newest version was put at `source_newest`: the earlier of it
    /// and the last mirror's; `None` (every version) for a source without
    /// versions. [`Newer::Remove`] refuses nothing, and gives `None`.
    pub fn refused_after(self, source_newest: Option<u64>) -> Option<u64> {
        match (self, source_newest) {
            (Newer::Remove, _) => None,
            (
                Newer::Refuse {
                    last_copy: Some(last),
                },
                Some(newest),
            ) => Some(newest.min(last)),
            (Newer::Refuse { .. }, newest) => newest,
        }
    }
}

/// What a mirror did, and what it did not copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MirrorReport {
    /// Source entries read.
    pub read: u64,
    /// Entries written to the destination (absent there, or with another
    /// value or count).
    pub copied: u64,
    /// Entries the destination already held as the source does.
    pub present: u64,
    /// Destination entries removed, the source holding none under their
    /// keys.
    pub removed: u64,
    /// Bytes written: key, value and an 8-byte count per entry copied.
    pub bytes_written: u64,
    /// Entries not copied or not removed, and why: while there is one, the
    /// destination is not an exact mirror.
    pub findings: Vec<MirrorFinding>,
    /// What verify found wrong with the source, one line each (verify's
    /// own), and the names it cannot read back whole (`broken name: …`).
    /// While there is one, the mirror only rescued: into an empty
    /// destination it copied what authenticates but what verify names, and
    /// a destination that held entries it left as it was
    /// ([`MirrorReport::dest_left_as_it_was`]).
    pub source_damage: Vec<String>,
    /// Whether the source was damaged and the destination, which held
    /// entries, was left as it was.
    pub dest_left_as_it_was: bool,
    /// Whether this was a dry run ([`dry_run`]): then `copied`, `removed`
    /// and `bytes_written` are what a mirror would write and remove, and
    /// nothing was.
    pub dry_run: bool,
    /// The names whose versions the destination lost (would lose, in a dry
    /// run), in name order: versions of a name the source no longer holds,
    /// or holds otherwise (another content under that number), and whole
    /// names the source does not hold.
    pub names_removed: Vec<NameChange>,
    /// In a dry run only (a mirror leaves it empty, so that the first copy
    /// of a large store does not hold every name): the names whose versions
    /// the destination would gain, in name order.
    pub names_added: Vec<NameChange>,
    /// When the newest version of the source was put (seconds since the
    /// Unix epoch), or `None` when it holds no version (or the destination
    /// was left as it was).
    pub source_newest: Option<u64>,
    /// How many of the source's newest versions (those a name's record
    /// holds inline) are stamped after the clock of the machine the mirror
    /// runs on: put under a clock set ahead, or by a machine whose clock
    /// is. They say nothing of when they were put, and are not taken as
    /// the source's newest ([`MirrorReport::source_newest`]), which would
    /// otherwise hide the destination's own versions until that time.
    pub source_stamped_ahead: u64,
    /// The destination's versions the source does not hold put after the
    /// source's newest (or the last mirror's, [`Newer::Refuse`]), in name
    /// order (`whole_name`: the source holds no record of the name): what
    /// a mirror refuses to remove, and a dry run lists, unless told to
    /// remove them ([`Newer::Remove`]).
    pub newer_in_dest: Vec<NameChange>,
}

/// Versions of one name that a mirror removes from the destination, or
/// adds to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NameChange {
    /// The name.
    pub name: String,
    /// The versions removed or added, by increasing number.
    pub versions: Vec<ChangedVersion>,
    /// Whether the name goes or comes whole: the other store holds no
    /// record of it.
    pub whole_name: bool,
}

/// One version in a [`NameChange`]: its number, and what it stands for,
/// so that a listing can show a directory's version as `ls` does
/// (`NAME/@N`). In JSON it is the number alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct ChangedVersion {
    /// The version number.
    pub number: u32,
    /// File, symlink or directory.
    pub kind: EntryKind,
}

impl From<ChangedVersion> for u32 {
    fn from(version: ChangedVersion) -> u32 {
        version.number
    }
}

impl MirrorReport {
    /// Whether the destination is now an exact mirror of the source.
    pub fn is_exact(&self) -> bool {
        self.findings.is_empty() && self.source_damage.is_empty()
    }
}

/// An entry a mirror did not copy or remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MirrorFinding {
    /// A source node that authenticates at no height (or a source entry
    /// that is no node nor catalog record): not copied.
    Tampered {
        /// Its key (hex).
        key: String,
    },
    /// A source catalog record that does not authenticate: not copied.
    BadRecord {
        /// Its key (hex).
        key: String,
    },
    /// A source entry its backend cannot decode: not copied.
    Unreadable {
        /// Its key (hex), or the prefix of a range of keys the backend
        /// could not read.
        key: String,
        /// What the backend said.
        detail: String,
    },
    /// A destination entry its backend cannot decode, left there.
    DestUnreadable {
        /// Its key (hex), or the prefix of a range of keys.
        key: String,
        /// What the backend said.
        detail: String,
    },
}

impl std::fmt::Display for MirrorFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrorFinding::Tampered { key } => write!(
                f,
                "tampered: source node {key} does not authenticate; not copied (the destination \
                 keeps what it held under that key)"
            ),
            MirrorFinding::BadRecord { key } => write!(
                f,
                "bad-record: source catalog record {key} does not authenticate; not copied (the \
                 destination keeps what it held under that key)"
            ),
            MirrorFinding::Unreadable { key, detail } => write!(
                f,
                "unreadable: source entry {key} cannot be decoded ({detail}); not copied"
            ),
            MirrorFinding::DestUnreadable { key, detail } => write!(
                f,
                "dest-unreadable: destination entry {key} cannot be decoded ({detail}); left \
                 there"
            ),
        }
    }
}

/// Why a mirror could not run, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// The two stores have different keys: entries of one mean nothing
    /// under the other's key.
    #[error(
        "the destination store's key is not the source's (their key check values differ); \
         nothing was written"
    )]
    KeyDiffers,
    /// The two stores seal nodes with different parameters.
    #[error(
        "the destination store's {what} is {in_dest}, the source's is {in_source}: nodes made \
         with one are not the other's; nothing was written"
    )]
    ParamsDiffer {
        /// `chunk size` or `wrapper`.
        what: &'static str,
        /// The source's.
        in_source: String,
        /// The destination's.
        in_dest: String,
    },
    /// The destination's backend nests with other stores (a prefix of
    /// one starts the other's, left so by a build from before `init`
    /// refused that): its walks take their entries for its own, and the
    /// mirror would remove them as entries the source lacks.
    #[error(
        "the destination's backend nests with {0}: its walks take that store's entries for its \
         own, and the mirror would remove them as entries the source lacks; nothing was \
         written. Copy into a store whose table or prefix nests with no other's"
    )]
    DestNests(String),
    /// The destination holds versions of its own, put after the source's
    /// newest (or the last mirror's), which the mirror would remove
    /// ([`Newer::Refuse`]).
    #[error(
        "the destination holds {} version(s) of {} name(s) that the source does not hold, put \
         after its newest version; a mirror would remove them, so nothing was written",
        newer.iter().map(|c| c.versions.len()).sum::<usize>(),
        newer.len()
    )]
    DestNewer {
        /// The time they were put after (seconds since the Unix epoch):
        /// the source's newest version's, or the last mirror's where that
        /// is earlier; `None` when the source holds no version.
        since: Option<u64>,
        /// The newer versions, in name order.
        newer: Vec<NameChange>,
    },
    /// The source could not be verified.
    #[error("cannot verify the store copied: {0}")]
    Check(StoreError),
    /// The source's backend failed.
    #[error("cannot read the source: {0}")]
    Source(BackendError),
    /// The destination's backend failed; what was written before stays.
    #[error("cannot write the destination: {0}")]
    Dest(BackendError),
}

/// Makes `dest`'s entries exactly `source`'s (see the module docs),
/// calling `progress` after each batch. Refuses stores whose keys or
/// parameters differ, and a destination whose backend nests with another
/// store's ([`Backend::nested_stores`]; a backend that cannot be asked,
/// such as a Redis user allowed its own prefix only, is not refused),
/// before anything is written. Returns what it did; the destination is
/// an exact mirror only if the report has no findings. The report names
/// the versions the destination lost ([`MirrorReport::names_removed`]),
/// gathered by the passes that decide them. With [`Newer::Refuse`], a
/// destination holding versions of its own put after the source's newest
/// is refused before anything is written ([`MirrorError::DestNewer`]).
pub fn mirror(
    source: &Store,
    dest: &Store,
    limits: Limits,
    newer: Newer,
    progress: &mut (dyn FnMut(Phase, &MirrorReport) + Send),
) -> Result<MirrorReport, MirrorError> {
    run(source, dest, limits, newer, false, progress)
}

/// What [`mirror`] would do, by the same passes, writing nothing to `dest`
/// (nor taking its writer lock): the source verified first, the entries
/// it would copy and remove counted, and the names whose versions `dest`
/// would lose or gain ([`MirrorReport::names_removed`],
/// [`MirrorReport::names_added`]), and, with [`Newer::Refuse`], its
/// versions of its own that [`mirror`] would refuse to remove
/// ([`MirrorReport::newer_in_dest`]; listed, not refused).
/// Refuses what [`mirror`] refuses before it reads the stores' entries. Where
/// the source is damaged, the report says what the mirror would then do
/// (rescue, or leave `dest` as it was). Besides a mirror's memory, it holds
/// the keys it would remove and the names it lists.
pub fn dry_run(
    source: &Store,
    dest: &Store,
    limits: Limits,
    newer: Newer,
    progress: &mut (dyn FnMut(Phase, &MirrorReport) + Send),
) -> Result<MirrorReport, MirrorError> {
    run(source, dest, limits, newer, true, progress)
}

/// [`mirror`], or with `dry_run` [`dry_run`].
fn run(
    source: &Store,
    dest: &Store,
    limits: Limits,
    newer: Newer,
    dry_run: bool,
    progress: &mut (dyn FnMut(Phase, &MirrorReport) + Send),
) -> Result<MirrorReport, MirrorError> {
    check_alike(source, dest)?;
    if let Ok(nested) = dest.backend().nested_stores()
        && !nested.is_empty()
    {
        return Err(MirrorError::DestNests(nested.join(", ")));
    }
    let limits = Limits {
        batch_bytes: limits.batch_bytes.max(1),
        batch_entries: limits.batch_entries.max(1),
    };
    let mut report = MirrorReport {
        dry_run,
        ..MirrorReport::default()
    };
    progress(Phase::CheckingSource, &report);
    let damage = source_damage(source)?;
    report.source_damage = damage.lines;
    let rescue = !report.source_damage.is_empty();
    if rescue && holds_entries(dest.backend()).map_err(MirrorError::Dest)? {
        // Adding to a mirror that holds entries would leave its counts
        // short: a record or node added that refers to a node it holds
        // does not raise that node's count.
        report.dest_left_as_it_was = true;
        return Ok(report);
    }
    // A dry run writes nothing, and so does not hold the destination.
    let _dest_held = (!dry_run).then(|| dest.lock_writer());
    source.lock_writer().run(|pool| {
        // One thread where the source is told so (`Store::set_parallel`).
        let parallel = pool && source.is_parallel();
        progress(Phase::CheckingNewer, &report);
        let newest = newest_version(source, crate::store::now()).map_err(MirrorError::Source)?;
        (report.source_newest, report.source_stamped_ahead) = newest;
        if let Newer::Refuse { .. } = newer {
            let since = newer.refused_after(report.source_newest);
            let found = newer_versions(source, dest, since)?;
            if !dry_run && !found.is_empty() {
                return Err(MirrorError::DestNewer {
                    since,
                    newer: found,
                });
            }
            report.newer_in_dest = found;
        }
        let mut run = Mirror {
            source,
            dest,
            limits,
            parallel,
            rescue,
            dry_run,
            left_out: &damage.keys,
            report: std::mem::take(&mut report),
            progress: &mut *progress,
        };
        run.copy(false)?;
        run.copy(true)?;
        if !rescue {
            // Names' records first, then what is left (their pages, which
            // nothing reads without them): a removed record's versions are
            // read whole before any of its pages goes. A dry run, which
            // removes nothing, counts both in the first.
            run.prune(Stale::Heads)?;
            if !dry_run {
                run.prune(Stale::Records)?;
            }
            run.prune(Stale::Nodes)?;
        }
        let mut report = run.report;
        for names in [&mut report.names_removed, &mut report.names_added] {
            // A walk may meet a key twice (a Redis SCAN does).
            names.sort_by(|a, b| a.name.cmp(&b.name));
            names.dedup_by(|a, b| a.name == b.name);
        }
        Ok(report)
    })
}

/// Refuses two stores whose keys or node parameters differ.
fn check_alike(source: &Store, dest: &Store) -> Result<(), MirrorError> {
    if source.key_check() != dest.key_check() {
        return Err(MirrorError::KeyDiffers);
    }
    let (s, d) = (source.params(), dest.params());
    if s.chunk_size() != d.chunk_size() {
        return Err(MirrorError::ParamsDiffer {
            what: "chunk size",
            in_source: s.chunk_size().to_string(),
            in_dest: d.chunk_size().to_string(),
        });
    }
    if s.wrapper() != d.wrapper() {
        return Err(MirrorError::ParamsDiffer {
            what: "wrapper",
            in_source: s.wrapper().name().to_owned(),
            in_dest: d.wrapper().name().to_owned(),
        });
    }
    Ok(())
}

/// When the newest version `store` holds was put: the latest of its names'
/// records' own versions (a record's pages hold older ones) not stamped
/// after `now`; and how many are, which are left out (see
/// [`MirrorReport::source_stamped_ahead`]). Records that do not open
/// (verify names them) or that a newer seccs wrote are passed over.
fn newest_version(store: &Store, now: u64) -> Result<(Option<u64>, u64), BackendError> {
    let (mut newest, mut ahead): (Option<u64>, u64) = (None, 0);
    store.backend().walk(
        &[catalog::KEY_PREFIX],
        &mut |key, entry| {
            if catalog::is_catalog_key(key)
                && let Ok(catalog::Entry::Head(head)) =
                    store.catalog().open_entry(key, &entry.value)
            {
                for time in head.record.versions.iter().map(|v| v.time) {
                    match time > now {
                        true => ahead += 1,
                        false => newest = newest.max(Some(time)),
                    }
                }
            }
            Ok(())
        },
        Some(&mut |_, _| {}),
    )?;
    Ok((newest, ahead))
}

/// The versions of `dest` put after `since` (every version, when it is
/// `None`) that `source` does not hold, in name order, each name marked
/// whole where `source` holds no record of it. Only the records holding
/// such a version are kept while `dest` is walked (every record, for a
/// source without versions); their pages, and the source's records of the
/// same names, are read after.
fn newer_versions(
    source: &Store,
    dest: &Store,
    since: Option<u64>,
) -> Result<Vec<NameChange>, MirrorError> {
    let is_newer = |time: u64| since.is_none_or(|since| time > since);
    let mut heads: Vec<(Vec<u8>, catalog::Head)> = Vec::new();
    dest.backend()
        .walk(
            &[catalog::KEY_PREFIX],
            &mut |key, entry| {
                if catalog::is_catalog_key(key)
                    && let Ok(catalog::Entry::Head(head)) =
                        dest.catalog().open_entry(key, &entry.value)
                    && head.record.versions.iter().any(|v| is_newer(v.time))
                {
                    heads.push((key.to_vec(), head));
                }
                Ok(())
            },
            Some(&mut |_, _| {}),
        )
        .map_err(MirrorError::Dest)?;
    let keys: Vec<&[u8]> = heads.iter().map(|(key, _)| key.as_slice()).collect();
    let in_source = lookup(source.backend(), &keys).map_err(MirrorError::Source)?;
    let mut newer = Vec::new();
    for ((key, head), theirs) in heads.iter().zip(in_source) {
        // A version the source holds too is not the destination's own (a
        // source record can keep in a page a version put after `since`
        // where its newer ones were removed, and versions put after the
        // last mirror may be the source's). A source record that does
        // not open holds none that can be named.
        let whole_name = theirs.is_none();
        let held: HashSet<VersionId> =
            match theirs.map(|t| source.catalog().open_head(key, &t.value)) {
                Some(Ok(theirs)) => versions_of(source, &theirs, &HashMap::new())
                    .map_err(MirrorError::Source)?
                    .into_iter()
                    .collect(),
                _ => HashSet::new(),
            };
        let versions: Vec<ChangedVersion> = versions_of(dest, head, &HashMap::new())
            .map_err(MirrorError::Dest)?
            .into_iter()
            .filter(|v| is_newer(v.time) && !held.contains(v))
            .map(|v| v.changed())
            .collect();
        if !versions.is_empty() {
            newer.push(NameChange {
                name: head.record.name.clone(),
                versions,
                whole_name,
            });
        }
    }
    // A walk may meet a key twice (a Redis SCAN does).
    newer.sort_by(|a, b| a.name.cmp(&b.name));
    newer.dedup_by(|a, b| a.name == b.name);
    Ok(newer)
}

/// Whether `backend` holds any entry (a walk stopped at the first).
fn holds_entries(backend: &dyn Backend) -> Result<bool, BackendError> {
    let (mut found, mut damaged) = (false, false);
    let walked = backend.walk(
        &[],
        &mut |_, _| {
            found = true;
            Err(stop())
        },
        Some(&mut |_, _| damaged = true),
    );
    match walked {
        Err(_) if found => Ok(true),
        other => other.map(|()| found || damaged),
    }
}

/// What verify finds wrong with a source: its lines, and the keys of the
/// entries it names (nodes that do not authenticate or cannot be read,
/// records that do not authenticate), which a rescue leaves out.
struct SourceDamage {
    lines: Vec<String>,
    keys: HashSet<Vec<u8>>,
}

/// Verifies `source` and keeps what is damage: not orphans, orphan pages
/// or records of a newer seccs.
fn source_damage(source: &Store) -> Result<SourceDamage, MirrorError> {
    let report = source.verify().map_err(MirrorError::Check)?;
    let mut damage = SourceDamage {
        lines: Vec::new(),
        keys: HashSet::new(),
    };
    for finding in &report.findings {
        let key = match finding {
            Finding::Orphan { .. } | Finding::OrphanPage { .. } | Finding::NewerRecord { .. } => {
                continue;
            }
            Finding::Tampered { node } => Some(node),
            Finding::BadRecord { key, .. } | Finding::Unreadable { key, .. } => Some(key),
            Finding::Missing { .. } | Finding::WrongCount { .. } | Finding::WrongHeight { .. } => {
                None
            }
        };
        if let Some(key) = key.and_then(|k| seccs_core::hexenc::decode(k).ok()) {
            damage.keys.insert(key);
        }
        damage.lines.push(finding.to_string());
    }
    for name in &report.broken_names {
        damage.lines.push(format!("broken name: {name}"));
    }
    Ok(damage)
}

/// The error a walk's visitor returns to end the walk early; the caller
/// knows why from what it set before.
fn stop() -> BackendError {
    BackendError::other("mirror", "walk ended early")
}

/// One run of [`mirror`].
struct Mirror<'a> {
    source: &'a Store,
    dest: &'a Store,
    limits: Limits,
    /// Whether rayon may be used (see `Held::run`).
    parallel: bool,
    /// Whether the source is damaged: then only what the destination
    /// lacks is written, and nothing is removed.
    rescue: bool,
    /// Whether nothing is written or removed, only counted and listed.
    dry_run: bool,
    /// Source entries verify named as damaged, left out.
    left_out: &'a HashSet<Vec<u8>>,
    report: MirrorReport,
    progress: &'a mut (dyn FnMut(Phase, &MirrorReport) + Send),
}

impl Mirror<'_> {
    /// Passes 1 (`records` false: nodes) and 2 (catalog records): every
    /// such source entry that authenticates is written where the
    /// destination lacks it or holds another value or count.
    fn copy(&mut self, records: bool) -> Result<(), MirrorError> {
        let source = self.source;
        let limits = self.limits;
        // Catalog keys all start with its prefix; nodes may too, so the
        // walk of nodes walks everything and skips the records.
        let prefix: &[u8] = if records { &[catalog::KEY_PREFIX] } else { &[] };
        let left_out = self.left_out;
        let mut pending: Vec<(Vec<u8>, Entry)> = Vec::new();
        let mut pending_bytes = 0usize;
        let mut dest_failed = None;
        let mut damaged = Vec::new();
        // Records with pages, kept until the walk ends: as many as names
        // with more versions than a record holds inline.
        let mut paged: Vec<(Vec<u8>, Entry, Vec<Vec<u8>>)> = Vec::new();
        let walked = source.backend().walk(
            prefix,
            &mut |key, entry| {
                if catalog::is_catalog_key(key) != records || left_out.contains(key) {
                    return Ok(());
                }
                if records {
                    // A name's record goes with its pages, into one batch,
                    // after this walk (the source is not read while it is
                    // walked); a page met on its own is skipped (its record
                    // brings it, and one no record lists nothing reads).
                    match source.catalog().open_entry(key, &entry.value) {
                        Ok(catalog::Entry::Page(_)) => return Ok(()),
                        Ok(catalog::Entry::Head(head)) if !head.pages.is_empty() => {
                            paged.push((
                                key.to_vec(),
                                entry.clone(),
                                source.catalog().page_keys(&head),
                            ));
                            return Ok(());
                        }
                        // A record without pages, one that is not authentic
                        // (reported by the flush), or a newer seccs's
                        // record: copied as it is.
                        _ => {}
                    }
                }
                pending_bytes += key.len() + entry.value.len();
                pending.push((key.to_vec(), entry.clone()));
                if pending.len() >= limits.batch_entries || pending_bytes >= limits.batch_bytes {
                    pending_bytes = 0;
                    if let Err(e) = self.flush(records, &mut pending) {
                        dest_failed = Some(e);
                        return Err(stop());
                    }
                }
                Ok(())
            },
            // The walk of every key (nodes) reports every damaged entry
            // once; the walk of the catalog's prefix would report those
            // under it again.
            Some(&mut |key, e| {
                if !records {
                    damaged.push((key.to_vec(), e.to_string()));
                }
            }),
        );
        if let Some(e) = dest_failed {
            return Err(MirrorError::Dest(e));
        }
        walked.map_err(MirrorError::Source)?;
        self.flush(records, &mut pending)
            .map_err(MirrorError::Dest)?;
        let mut pending_bytes = 0usize;
        for (key, entry, page_keys) in paged {
            for (page_key, page) in
                pages_of(source, page_keys, left_out).map_err(MirrorError::Source)?
            {
                pending_bytes += page_key.len() + page.value.len();
                pending.push((page_key, page));
            }
            pending_bytes += key.len() + entry.value.len();
            pending.push((key, entry));
            if pending.len() >= limits.batch_entries || pending_bytes >= limits.batch_bytes {
                pending_bytes = 0;
                self.flush(records, &mut pending)
                    .map_err(MirrorError::Dest)?;
            }
        }
        self.flush(records, &mut pending)
            .map_err(MirrorError::Dest)?;
        // Those verify named are in the report already, as source damage.
        for (key, detail) in damaged.into_iter().filter(|(k, _)| !left_out.contains(k)) {
            self.report.findings.push(MirrorFinding::Unreadable {
                key: seccs_core::hexenc::encode(&key),
                detail,
            });
        }
        Ok(())
    }

    /// Authenticates the entries of `pending` (taking them), and writes
    /// those the destination does not hold as they are.
    ///
    /// A node the destination holds as it is (value and count) is not
    /// opened again: nothing is written for it, so nothing unauthenticated
    /// reaches the destination through it, and the source's verify, run
    /// before the mirror, has opened every node. An unchanged mirror so
    /// opens each node once, not twice. Records are all opened: the names'
    /// versions are read from them.
    fn flush(
        &mut self,
        records: bool,
        pending: &mut Vec<(Vec<u8>, Entry)>,
    ) -> Result<(), BackendError> {
        if pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(pending);
        self.report.read += batch.len() as u64;
        let held = {
            let keys: Vec<&[u8]> = batch.iter().map(|(key, _)| key.as_slice()).collect();
            lookup(self.dest.backend(), &keys)?
        };
        let rescue = self.rescue;
        // A rescue (into a destination that held nothing) adds only what
        // the destination lacks.
        let kept = move |entry: &Entry, held: &Option<Entry>| {
            held.as_ref() == Some(entry) || (rescue && held.is_some())
        };
        let source = self.source;
        // `None`: a node the destination holds as it is, not opened.
        let check = |((key, entry), held): (&(Vec<u8>, Entry), &Option<Entry>)| {
            (records || !kept(entry, held)).then(|| authentic(source, records, key, &entry.value))
        };
        let authentic: Vec<Option<Authentic>> = match self.parallel {
            true => batch.par_iter().zip(held.par_iter()).map(check).collect(),
            false => batch.iter().zip(held.iter()).map(check).collect(),
        };
        // The entries that authenticate, with what the destination holds
        // under each.
        let mut good = Vec::with_capacity(batch.len());
        let mut good_held = Vec::with_capacity(batch.len());
        let mut is_page = Vec::with_capacity(batch.len());
        let mut unopened = 0u64;
        for ((item, held), checked) in batch.into_iter().zip(held).zip(authentic) {
            match checked {
                None => unopened += 1,
                Some(Authentic::No) => {
                    let key = seccs_core::hexenc::encode(&item.0);
                    self.report.findings.push(match records {
                        true => MirrorFinding::BadRecord { key },
                        false => MirrorFinding::Tampered { key },
                    });
                }
                Some(checked) => {
                    good.push(item);
                    good_held.push(held);
                    is_page.push(checked == Authentic::Page);
                }
            }
        }
        if records {
            // Before the write, which replaces the destination's record
            // (and a page it lists).
            self.name_changes(&good, &good_held, &is_page)?;
        }
        let (mut copied, mut present, mut bytes) = (0u64, unopened, 0u64);
        // Pages before the records that list them: a backend without
        // transactions then never holds a record whose new page is not yet
        // written.
        let (mut pages, mut others) = (Vec::new(), Vec::new());
        for (((key, entry), held), page) in good.into_iter().zip(good_held).zip(is_page) {
            if kept(&entry, &held) {
                present += 1;
                continue;
            }
            copied += 1;
            bytes += (key.len() + entry.value.len() + 8) as u64;
            match page {
                true => pages.push((key, entry)),
                false => others.push((key, entry)),
            }
        }
        let mut writes = Batch::new();
        let had_pages = !pages.is_empty();
        for (key, entry) in pages {
            writes.put(key, entry.value, entry.count);
        }
        if had_pages && !others.is_empty() {
            writes.barrier();
        }
        for (key, entry) in others {
            writes.put(key, entry.value, entry.count);
        }
        if !writes.is_empty() && !self.dry_run {
            self.dest.backend().apply_owned(writes)?;
        }
        self.report.copied += copied;
        self.report.present += present;
        self.report.bytes_written += bytes;
        let phase = match records {
            true => Phase::Records,
            false => Phase::Nodes,
        };
        (self.progress)(phase, &self.report);
        Ok(())
    }

    /// The versions the flush of `good` (source records that authenticate,
    /// `held` what the destination holds under their keys) takes from the
    /// destination, and in a dry run adds to it, into the report: read from
    /// the names' records it writes and those they replace, with their
    /// pages (the source's from the batch, where a name's record comes with
    /// its pages, the destination's looked up there).
    fn name_changes(
        &mut self,
        good: &[(Vec<u8>, Entry)],
        held: &[Option<Entry>],
        is_page: &[bool],
    ) -> Result<(), BackendError> {
        let (source, dest) = (self.source, self.dest);
        let pages: HashMap<&[u8], &[u8]> = good
            .iter()
            .zip(is_page)
            .filter(|(_, page)| **page)
            .map(|((key, entry), _)| (key.as_slice(), entry.value.as_slice()))
            .collect();
        for (((key, entry), held), page) in good.iter().zip(held).zip(is_page) {
            let written = held.as_ref() != Some(entry) && !(self.rescue && held.is_some());
            // A record the destination lacks takes nothing from it: only a
            // dry run lists what it adds.
            if *page || !written || (held.is_none() && !self.dry_run) {
                continue;
            }
            // A newer seccs's record: its versions cannot be read here.
            let Ok(head) = source.catalog().open_head(key, &entry.value) else {
                continue;
            };
            let ours = versions_of(source, &head, &pages)?;
            // A record of the destination that does not open holds no
            // version that can be named.
            let theirs = match held
                .as_ref()
                .map(|h| dest.catalog().open_head(key, &h.value))
            {
                Some(Ok(theirs)) => versions_of(dest, &theirs, &HashMap::new())?,
                _ => Vec::new(),
            };
            let removed = versions_missing(&theirs, &ours);
            if !removed.is_empty() {
                self.report.names_removed.push(NameChange {
                    name: head.record.name.clone(),
                    versions: removed,
                    whole_name: false,
                });
            }
            let added = versions_missing(&ours, &theirs);
            if self.dry_run && !added.is_empty() {
                self.report.names_added.push(NameChange {
                    name: head.record.name,
                    versions: added,
                    whole_name: held.is_none(),
                });
            }
        }
        Ok(())
    }

    /// Passes 3 (catalog records: [`Stale::Heads`], then
    /// [`Stale::Records`]) and 4 ([`Stale::Nodes`]): every such destination
    /// entry whose key the source does not hold is removed. Keys are looked
    /// up in the source a batch at a time, and removed a batch at a time:
    /// once [`PRUNE_BATCHES_PER_WALK`] batches of keys to remove are
    /// gathered, the walk ends, they are removed, and the walk starts again
    /// (the destination is not written while it is walked). Each such round
    /// removes that many, so the rounds end. A dry run walks once and
    /// removes nothing.
    fn prune(&mut self, stale: Stale) -> Result<(), MirrorError> {
        let records = stale != Stale::Nodes;
        let phase = match records {
            true => Phase::StaleRecords,
            false => Phase::StaleNodes,
        };
        let prefix: &[u8] = if records { &[catalog::KEY_PREFIX] } else { &[] };
        let (source, dest, limit) = (self.source, self.dest, self.limits.batch_entries);
        let dry_run = self.dry_run;
        // The values of the candidates are kept to tell names' records
        // from pages.
        let keep_values = stale == Stale::Heads;
        loop {
            let mut candidates: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut doomed: Vec<Vec<u8>> = Vec::new();
            let mut heads: Vec<catalog::Head> = Vec::new();
            let mut source_failed = None;
            let mut full = false;
            let mut damaged = Vec::new();
            let sort = |candidates: &mut Vec<(Vec<u8>, Vec<u8>)>,
                        doomed: &mut Vec<Vec<u8>>,
                        heads: &mut Vec<catalog::Head>|
             -> Result<(), BackendError> {
                let keys: Vec<Vec<u8>> = candidates.iter().map(|(k, _)| k.clone()).collect();
                let gone: HashSet<Vec<u8>> = absent(source.backend(), &keys)?.into_iter().collect();
                for (key, value) in candidates.drain(..) {
                    if !gone.contains(&key) {
                        continue;
                    }
                    if keep_values {
                        match dest.catalog().open_entry(&key, &value) {
                            // Left for the pass after (but counted by a dry
                            // run, which has none).
                            Ok(catalog::Entry::Page(_)) if !dry_run => continue,
                            Ok(catalog::Entry::Head(head)) => heads.push(head),
                            _ => {}
                        }
                    }
                    doomed.push(key);
                }
                Ok(())
            };
            let walked = dest.backend().walk(
                prefix,
                &mut |key, entry| {
                    if catalog::is_catalog_key(key) != records {
                        return Ok(());
                    }
                    let value = match keep_values {
                        true => entry.value.clone(),
                        false => Vec::new(),
                    };
                    candidates.push((key.to_vec(), value));
                    if candidates.len() >= limit {
                        if let Err(e) = sort(&mut candidates, &mut doomed, &mut heads) {
                            source_failed = Some(e);
                            return Err(stop());
                        }
                        if !dry_run && doomed.len() >= limit.saturating_mul(PRUNE_BATCHES_PER_WALK)
                        {
                            full = true;
                            return Err(stop());
                        }
                    }
                    Ok(())
                },
                Some(&mut |key, e| {
                    if !records {
                        damaged.push((key.to_vec(), e.to_string()));
                    }
                }),
            );
            if let Some(e) = source_failed {
                return Err(MirrorError::Source(e));
            }
            match walked {
                Ok(()) => {
                    sort(&mut candidates, &mut doomed, &mut heads).map_err(MirrorError::Source)?;
                }
                Err(_) if full => {}
                Err(e) => return Err(MirrorError::Dest(e)),
            }
            // Read once the walk is over, before anything is removed: the
            // pages of a removed record go in the pass after.
            for head in heads {
                let versions = versions_of(dest, &head, &HashMap::new())
                    .map_err(MirrorError::Dest)?
                    .into_iter()
                    .map(|v| v.changed())
                    .collect();
                self.report.names_removed.push(NameChange {
                    name: head.record.name,
                    versions,
                    whole_name: true,
                });
            }
            self.remove(phase, doomed)?;
            if !full {
                return self.settle_damage(damaged);
            }
        }
    }

    /// Removes `keys` from the destination, a batch at a time.
    fn remove(&mut self, phase: Phase, mut keys: Vec<Vec<u8>>) -> Result<(), MirrorError> {
        // A walk may meet a key twice (a Redis SCAN does).
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        if self.dry_run {
            self.report.removed += keys.len() as u64;
            (self.progress)(phase, &self.report);
            return Ok(());
        }
        for chunk in keys.chunks(self.limits.batch_entries) {
            let mut batch = Batch::new();
            for key in chunk {
                batch.delete(key.clone());
            }
            self.dest
                .backend()
                .apply_owned(batch)
                .map_err(MirrorError::Dest)?;
            self.report.removed += chunk.len() as u64;
            (self.progress)(phase, &self.report);
        }
        Ok(())
    }

    /// Entries of the destination its backend cannot decode, met by the
    /// last walk of pass 4: one the source does not hold is removed where
    /// it is an entry's key; what is left is a finding.
    ///
    /// A walk names damage by an entry's key, or by the name of what it
    /// found that is no entry (an S3 object, by its name's bytes, which
    /// may be as long as a key): a delete of the key removes the damage
    /// only where a lookup of the key finds something (an entry, or one it
    /// fails to decode). Elsewhere the delete would find nothing, nor would
    /// the lookup after it, and the object, still there, would count as
    /// removed.
    fn settle_damage(&mut self, damaged: Vec<(Vec<u8>, String)>) -> Result<(), MirrorError> {
        let (source, dest) = (self.source, self.dest);
        let node_len = source.wrapper().digest_len();
        for (key, detail) in damaged {
            let is_key = catalog::is_catalog_key(&key) || key.len() == node_len;
            let gone = is_key
                && held(dest.backend(), &key).map_err(MirrorError::Dest)?
                && !held(source.backend(), &key).map_err(MirrorError::Source)?;
            if gone && self.dry_run {
                self.report.removed += 1;
                continue;
            }
            if gone {
                let mut batch = Batch::new();
                batch.delete(key.clone());
                dest.backend().apply(&batch).map_err(MirrorError::Dest)?;
                if matches!(dest.backend().get_counts(&[key.as_slice()]), Ok(found) if found.iter().all(Option::is_none))
                {
                    self.report.removed += 1;
                    continue;
                }
            }
            self.report.findings.push(MirrorFinding::DestUnreadable {
                key: seccs_core::hexenc::encode(&key),
                detail,
            });
        }
        Ok(())
    }
}

/// Whether a lookup of `key` in `backend` finds something under it: an
/// entry, or one it cannot decode (its lookup fails for that entry).
fn held(backend: &dyn Backend, key: &[u8]) -> Result<bool, BackendError> {
    match backend.get_counts(&[key]) {
        Ok(found) => Ok(found.iter().any(Option::is_some)),
        Err(e) if e.fails_every_request() => Err(e),
        Err(_) => Ok(true),
    }
}

/// Which of the destination's entries a prune pass removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    /// Catalog records but pages (which a dry run counts here too): names'
    /// records, each read before it goes, for the versions it held.
    Heads,
    /// The catalog records left: pages.
    Records,
    /// Nodes.
    Nodes,
}

/// A version as a mirror compares it: its number, content, time and kind
/// (a number the other store holds with another content is another
/// version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VersionId {
    number: u32,
    content_ref: ContentRef,
    time: u64,
    kind: EntryKind,
}

impl VersionId {
    fn changed(&self) -> ChangedVersion {
        ChangedVersion {
            number: self.number,
            kind: self.kind,
        }
    }
}

/// Every version of the name whose record is `head`, in `store`: its
/// inline versions and its pages', each page taken from `pages` or else
/// looked up in the store. A page missing or not the one the record lists
/// is left out (verify names it).
fn versions_of(
    store: &Store,
    head: &catalog::Head,
    pages: &HashMap<&[u8], &[u8]>,
) -> Result<Vec<VersionId>, BackendError> {
    let keys = store.catalog().page_keys(head);
    let wanted: Vec<&[u8]> = keys
        .iter()
        .map(Vec::as_slice)
        .filter(|k| !pages.contains_key(k))
        .collect();
    let found = lookup(store.backend(), &wanted)?;
    let looked_up: HashMap<&[u8], Entry> = wanted
        .into_iter()
        .zip(found)
        .filter_map(|(k, e)| e.map(|e| (k, e)))
        .collect();
    let mut versions = Vec::new();
    for (key, listed) in keys.iter().zip(&head.pages) {
        let value = match pages.get(key.as_slice()) {
            Some(value) => *value,
            None => match looked_up.get(key.as_slice()) {
                Some(entry) => entry.value.as_slice(),
                None => continue,
            },
        };
        if let Ok(page) = store
            .catalog()
            .open_page(key, value, &head.record.name, listed.id)
        {
            versions.extend(page.versions);
        }
    }
    versions.extend(head.record.versions.iter().cloned());
    let mut ids: Vec<VersionId> = versions
        .into_iter()
        .map(|v| VersionId {
            number: v.number,
            content_ref: v.content_ref,
            time: v.time,
            kind: v.kind,
        })
        .collect();
    ids.sort_by_key(|v| v.number);
    Ok(ids)
}

/// The versions of `these` that `those` does not hold, by increasing
/// number.
fn versions_missing(these: &[VersionId], those: &[VersionId]) -> Vec<ChangedVersion> {
    let held: HashSet<&VersionId> = those.iter().collect();
    let mut missing: Vec<ChangedVersion> = these
        .iter()
        .filter(|v| !held.contains(v))
        .map(VersionId::changed)
        .collect();
    missing.dedup_by_key(|v| v.number);
    missing
}

/// Whether a source entry authenticates, and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authentic {
    /// It does not: not copied.
    No,
    /// A page of a name's record.
    Page,
    /// A node, a name's record, or a newer seccs's record.
    Yes,
}

/// Whether a source entry authenticates under the source's key: a node at
/// some height, as verify opens it; a catalog record under the catalog
/// key (one a newer seccs wrote authenticates too, and is copied).
fn authentic(source: &Store, records: bool, key: &[u8], value: &[u8]) -> Authentic {
    if records {
        match source.catalog().open_entry(key, value) {
            Ok(catalog::Entry::Page(_)) => Authentic::Page,
            Ok(catalog::Entry::Head(_)) | Err(StoreError::NewerFormat { .. }) => Authentic::Yes,
            Err(_) => Authentic::No,
        }
    } else if source.open_at_any_height(key, value).is_some() {
        Authentic::Yes
    } else {
        Authentic::No
    }
}

/// The pages under `keys` (a record's), as the source holds them, but those verify
/// named as damaged. A page the source does not hold, or cannot read, is
/// left out: verify names its record, and the flush reports what it
/// cannot open. Only an error that fails every request is returned.
fn pages_of(
    source: &Store,
    keys: Vec<Vec<u8>>,
    left_out: &HashSet<Vec<u8>>,
) -> Result<Vec<(Vec<u8>, Entry)>, BackendError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let found = lookup(source.backend(), &refs)?;
    Ok(keys
        .into_iter()
        .zip(found)
        .filter_map(|(key, entry)| entry.map(|e| (key, e)))
        .filter(|(key, _)| !left_out.contains(key))
        .collect())
}

/// The entries under `keys` in `backend`. A lookup that fails for one of
/// them (an entry the backend cannot decode) is made key by key, and a key
/// whose entry cannot be read counts as absent: the copy writes over it.
fn lookup(backend: &dyn Backend, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    match backend.get_many(keys) {
        Ok(found) if found.len() == keys.len() => Ok(found),
        Ok(_) => Err(BackendError::other(
            backend.name(),
            "a lookup answered another number of entries than keys asked for",
        )),
        Err(e) if e.fails_every_request() => Err(e),
        Err(_) => keys
            .iter()
            .map(|key| match backend.get_many(&[key]) {
                Ok(mut one) => Ok(one.pop().flatten()),
                Err(e) if e.fails_every_request() => Err(e),
                Err(_) => Ok(None),
            })
            .collect(),
    }
}

/// The keys of `keys` that `backend` does not hold. A lookup that fails for
/// one of them (an entry it cannot decode) is made key by key, and a key
/// whose entry cannot be read counts as held: it is not removed elsewhere.
fn absent(backend: &dyn Backend, keys: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, BackendError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let held: Vec<bool> = match backend.get_counts(&refs) {
        Ok(found) if found.len() == keys.len() => found.iter().map(Option::is_some).collect(),
        Ok(_) => {
            return Err(BackendError::other(
                backend.name(),
                "a lookup answered another number of counts than keys asked for",
            ));
        }
        Err(e) if e.fails_every_request() => return Err(e),
        Err(_) => refs
            .iter()
            .map(|key| held(backend, key))
            .collect::<Result<_, _>>()?,
    };
    Ok(keys
        .iter()
        .zip(held)
        .filter(|(_, held)| !held)
        .map(|(key, _)| key.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use seccs_core::SecretKey;

    use super::{
        ChangedVersion, Limits, MirrorError, MirrorReport, NameChange, Newer, dry_run, mirror,
        newest_version,
    };
    use crate::backend::{Backend, BackendError, Batch, Damaged, Entry, MemoryBackend, Visitor};
    use crate::catalog::{self, EntryKind};
    use crate::{Params, Store, WrapperKind};

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
            .collect()
    }

    fn params() -> Params {
        Params::new(256, WrapperKind::AesSiv).expect("params")
    }

    fn key() -> SecretKey {
        SecretKey::from_bytes([7; 32])
    }

    fn store_on(backend: Arc<dyn Backend>) -> Store {
        Store::open(backend, params(), &key()).expect("open")
    }

    fn put(store: &Store, name: &str, content: &[u8]) {
        store
            .put_named(&mut &content[..], name, EntryKind::File)
            .expect("put");
    }

    /// A source with names of several versions (one with enough for pages
    /// of older versions), a version removed, and a content put without a
    /// name.
    fn source() -> (Store, Arc<MemoryBackend>) {
        let backend = Arc::new(MemoryBackend::new());
        let store = store_on(backend.clone());
        put(&store, "docs/a", &bytes(20_000, 1));
        put(&store, "docs/a", &bytes(20_000, 2));
        put(&store, "docs/b", &bytes(3_000, 3));
        for i in 0..70u8 {
            put(&store, "log", &bytes(300, 100 + i));
        }
        store.remove_name("log", Some(5)).expect("rm log@5");
        store.put(&bytes(5_000, 9)).expect("put unnamed");
        (store, backend)
    }

    /// Every entry, in key order.
    fn entries(backend: &dyn Backend) -> Vec<(Vec<u8>, Entry)> {
        let mut all = Vec::new();
        backend
            .for_each(&mut |key, entry| {
                all.push((key.to_vec(), entry.clone()));
                Ok(())
            })
            .expect("walk");
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn small() -> Limits {
        Limits {
            batch_bytes: 64 << 10,
            batch_entries: 3,
        }
    }

    fn run(source: &Store, dest: &Store, limits: Limits) -> Result<MirrorReport, MirrorError> {
        mirror(source, dest, limits, REFUSE, &mut |_, _| {})
    }

    /// Refusing newer versions, no earlier mirror known.
    const REFUSE: Newer = Newer::Refuse { last_copy: None };

    #[test]
    fn a_mirror_copies_every_entry_as_stored_and_a_rerun_writes_nothing() {
        let (source, source_backend) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        let n = entries(source_backend.as_ref()).len() as u64;
        let report = run(&source, &dest, small()).expect("mirror");
        assert!(report.is_exact(), "{report:?}");
        assert_eq!(
            (report.read, report.copied, report.present, report.removed),
            (n, n, 0, 0)
        );
        assert!(report.bytes_written > 0);
        assert_eq!(
            entries(dest_backend.as_ref()),
            entries(source_backend.as_ref())
        );
        // Every version reads back from the mirror.
        for record in dest.list("").expect("list") {
            for v in &record.versions {
                dest.get(&v.content_ref).expect("a version reads back");
            }
        }
        let again = run(&source, &dest, Limits::default()).expect("again");
        assert_eq!(
            (
                again.copied,
                again.present,
                again.removed,
                again.bytes_written
            ),
            (0, n, 0, 0)
        );
    }

    #[test]
    fn a_rerun_after_changes_to_either_side_mirrors_exactly() {
        let (source, source_backend) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        run(&source, &dest, small()).expect("mirror");
        // The source loses names and gains one; the mirror gets a count
        // and a value changed and an entry of its own.
        source.remove_name("docs/a", None).expect("rm docs/a");
        source.remove_name("log", None).expect("rm log");
        put(&source, "new", &bytes(30_000, 50));
        let some = entries(dest_backend.as_ref());
        let mut batch = Batch::new();
        batch.set_count(some[0].0.clone(), some[0].1.count + 5);
        dest_backend.apply(&batch).expect("count");
        assert!(dest_backend.tamper(&some[1].0, vec![1, 2, 3]));
        let report = run(&source, &dest, small()).expect("rerun");
        assert!(report.is_exact(), "{report:?}");
        assert!(report.removed > 3, "more than a batch removed: {report:?}");
        assert_eq!(
            entries(dest_backend.as_ref()),
            entries(source_backend.as_ref())
        );
        assert!(dest.verify().expect("verify").is_clean());
    }

    #[test]
    fn entries_that_do_not_authenticate_are_reported_and_not_copied() {
        let (source, source_backend) = source();
        let all = entries(source_backend.as_ref());
        let node = all
            .iter()
            .find(|(k, _)| !catalog::is_catalog_key(k))
            .expect("a node")
            .clone();
        let record = all
            .iter()
            .find(|(k, _)| catalog::is_catalog_key(k))
            .expect("a record")
            .clone();
        for (key, entry) in [&node, &record] {
            let mut value = entry.value.clone();
            let last = value.len() - 1;
            value[last] ^= 1;
            assert!(source_backend.tamper(key, value));
        }
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        let report = run(&source, &dest, small()).expect("mirror");
        let hex = seccs_core::hexenc::encode;
        // Verify names both first, so the rescue leaves them out.
        assert!(!report.is_exact());
        assert!(report.findings.is_empty(), "{report:?}");
        for (what, key) in [
            ("tampered: node", &node.0),
            ("bad-record: catalog record", &record.0),
        ] {
            let line = format!("{what} {}", hex(key));
            assert!(
                report.source_damage.iter().any(|l| l.starts_with(&line)),
                "{line} in {:?}",
                report.source_damage
            );
        }
        assert_eq!(report.copied, all.len() as u64 - 2);
        let copied = entries(dest_backend.as_ref());
        assert!(
            copied.iter().all(|(k, _)| *k != node.0 && *k != record.0),
            "neither is copied"
        );
        assert_eq!(copied.len(), all.len() - 2, "every other entry is");
    }

    #[test]
    fn another_key_or_chunk_size_is_refused_before_anything_is_written() {
        let (source, _) = source();
        let other_key = Arc::new(MemoryBackend::new());
        let dest = Store::open(other_key.clone(), params(), &SecretKey::from_bytes([8; 32]))
            .expect("open");
        assert!(matches!(
            run(&source, &dest, small()),
            Err(MirrorError::KeyDiffers)
        ));
        assert!(entries(other_key.as_ref()).is_empty());
        let other_size = Arc::new(MemoryBackend::new());
        let dest = Store::open(
            other_size.clone(),
            Params::new(512, WrapperKind::AesSiv).expect("params"),
            &key(),
        )
        .expect("open");
        let e = run(&source, &dest, small()).expect_err("refused");
        assert!(
            e.to_string()
                .contains("chunk size is 512, the source's is 256"),
            "{e}"
        );
        assert!(entries(other_size.as_ref()).is_empty());
    }

    /// A memory backend whose writes fail once `left` batches were
    /// applied, as a destination whose copy is cut off (killed, a lost
    /// connection).
    struct CutOff {
        inner: Arc<MemoryBackend>,
        left: AtomicUsize,
    }

    impl Backend for CutOff {
        fn name(&self) -> &str {
            "cut-off"
        }
        fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
            self.inner.get_many(keys)
        }
        fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
            let left = self.left.load(Ordering::SeqCst);
            if left == 0 {
                return Err(BackendError::unavailable("cut-off", "cut off"));
            }
            self.left.store(left - 1, Ordering::SeqCst);
            self.inner.apply(batch)
        }
        fn is_transactional(&self) -> bool {
            true
        }
        fn walk(
            &self,
            prefix: &[u8],
            visit: &mut Visitor<'_>,
            damaged: Option<&mut Damaged<'_>>,
        ) -> Result<(), BackendError> {
            self.inner.walk(prefix, visit, damaged)
        }
    }

    /// A memory backend that records the most keys one call asked for or
    /// wrote, to hold a mirror to its batch limits.
    struct Measured {
        inner: Arc<MemoryBackend>,
        most: AtomicUsize,
    }

    impl Measured {
        fn saw(&self, n: usize) {
            self.most.fetch_max(n, Ordering::SeqCst);
        }
    }

    impl Backend for Measured {
        fn name(&self) -> &str {
            "measured"
        }
        fn get_many(&self, keys: &[&[u8]]) -> Result<Vec<Option<Entry>>, BackendError> {
            self.saw(keys.len());
            self.inner.get_many(keys)
        }
        fn get_counts(&self, keys: &[&[u8]]) -> Result<Vec<Option<u64>>, BackendError> {
            self.saw(keys.len());
            self.inner.get_counts(keys)
        }
        fn apply(&self, batch: &Batch) -> Result<(), BackendError> {
            self.saw(batch.len());
            self.inner.apply(batch)
        }
        fn is_transactional(&self) -> bool {
            true
        }
        fn walk(
            &self,
            prefix: &[u8],
            visit: &mut Visitor<'_>,
            damaged: Option<&mut Damaged<'_>>,
        ) -> Result<(), BackendError> {
            self.inner.walk(prefix, visit, damaged)
        }
    }

    #[test]
    fn no_lookup_or_write_of_a_mirror_goes_past_its_batch_limit() {
        let (source, source_backend) = source();
        let measured_source = Arc::new(Measured {
            inner: source_backend.clone(),
            most: AtomicUsize::new(0),
        });
        let source = Store::new_unchecked(measured_source.clone(), *source.params(), &key());
        // A destination that holds another store's worth of entries to
        // remove, and none of the source's.
        let dest_inner = Arc::new(MemoryBackend::new());
        let other = store_on(dest_inner.clone());
        for i in 0..40u8 {
            put(&other, &format!("old/{i}"), &bytes(2_000, i));
        }
        drop(other);
        let measured_dest = Arc::new(Measured {
            inner: dest_inner.clone(),
            most: AtomicUsize::new(0),
        });
        let dest = Store::new_unchecked(measured_dest.clone(), params(), &key());
        let limits = Limits {
            batch_bytes: 1 << 20,
            batch_entries: 7,
        };
        let report = run(&source, &dest, limits).expect("mirror");
        assert!(report.removed > 2 * 7, "{report:?}");
        assert_eq!(
            entries(dest_inner.as_ref()),
            entries(source_backend.as_ref())
        );
        // Removals collect up to a batch, then up to a batch more from
        // the lookup that filled it.
        assert!(measured_source.most.load(Ordering::SeqCst) <= 7);
        assert!(measured_dest.most.load(Ordering::SeqCst) <= 2 * 7);
    }

    /// Every version of every name the store lists reads back whole.
    fn every_version_reads(store: &Store) {
        for record in store.list("").expect("list") {
            for v in &record.versions {
                store.get(&v.content_ref).unwrap_or_else(|e| {
                    panic!("{}@{} does not read back: {e}", record.name, v.number)
                });
            }
        }
    }

    #[test]
    fn a_mirror_cut_off_at_any_batch_keeps_every_record_readable_and_a_rerun_finishes() {
        let (source, source_backend) = source();
        // A mirror of the store as it was, then the source changes.
        let before = Arc::new(MemoryBackend::new());
        run(&source, &store_on(before.clone()), small()).expect("first mirror");
        source.remove_name("docs/a", None).expect("rm docs/a");
        put(&source, "docs/b", &bytes(25_000, 60));
        put(&source, "new", &bytes(25_000, 61));
        let mut finished = false;
        for cut in 0.. {
            let inner = Arc::new(MemoryBackend::new());
            let old = entries(before.as_ref());
            let mut batch = Batch::new();
            for (key, entry) in old {
                batch.put(key, entry.value, entry.count);
            }
            inner.apply(&batch).expect("the old mirror");
            let cut_off = Arc::new(CutOff {
                inner: inner.clone(),
                left: AtomicUsize::new(cut),
            });
            let dest = Store::new_unchecked(cut_off, params(), &key());
            let result = run(&source, &dest, small());
            let plain = store_on(inner.clone());
            every_version_reads(&plain);
            if result.is_ok() {
                finished = true;
                assert_eq!(entries(inner.as_ref()), entries(source_backend.as_ref()));
                break;
            }
            assert!(matches!(result, Err(MirrorError::Dest(_))), "{result:?}");
            let rerun = run(&source, &plain, small()).expect("rerun");
            assert!(rerun.is_exact());
            assert_eq!(
                entries(inner.as_ref()),
                entries(source_backend.as_ref()),
                "cut after {cut} batches"
            );
            assert!(cut < 10_000, "the mirror never finished");
        }
        assert!(finished);
    }

    /// A source that lost a node, had a count changed, or had a page of a
    /// name rolled back to an older one (each authentic on its own) only
    /// rescues: the mirror, which holds the good copies, loses nothing and
    /// changes nothing, and the report names what verify found.
    #[test]
    fn a_damaged_source_never_takes_good_entries_from_its_mirror() {
        let (source, source_backend) = source();
        let before = entries(source_backend.as_ref());
        source.remove_name("log", Some(3)).expect("rm log@3");
        let head = source.catalog().key_of("log");
        let after = entries(source_backend.as_ref());
        let rolled_back = after
            .iter()
            .find(|(k, e)| {
                catalog::is_catalog_key(k)
                    && *k != head
                    && before.iter().any(|(bk, be)| bk == k && be.value != e.value)
            })
            .map(|(k, _)| k.clone())
            .expect("a page of log changed");
        let old_page = before
            .iter()
            .find(|(k, _)| *k == rolled_back)
            .map(|(_, e)| e.value.clone())
            .expect("its old value");
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        assert!(run(&source, &dest, small()).expect("mirror").is_exact());
        let mirrored = entries(dest_backend.as_ref());

        let nodes: Vec<&(Vec<u8>, Entry)> = after
            .iter()
            .filter(|(k, _)| !catalog::is_catalog_key(k))
            .collect();
        let mut lost = Batch::new();
        lost.delete(nodes[0].0.clone());
        lost.put(nodes[1].0.clone(), nodes[1].1.value.clone(), 0);
        source_backend
            .apply(&lost)
            .expect("lose a node, zero a count");
        assert!(source_backend.tamper(&rolled_back, old_page));
        // A new name of a content the mirror holds: adding its record
        // alone would leave that content's count short in the mirror.
        put(&source, "docs/b-again", &bytes(3_000, 3));

        let report = run(&source, &dest, small()).expect("mirror");
        assert!(!report.is_exact());
        assert!(report.dest_left_as_it_was, "{report:?}");
        assert_eq!((report.copied, report.removed), (0, 0), "{report:?}");
        for damage in [
            "missing: node",
            "wrong-count: node",
            "bad-record: catalog record",
        ] {
            assert!(
                report.source_damage.iter().any(|l| l.starts_with(damage)),
                "{damage} in {:?}",
                report.source_damage
            );
        }
        assert_eq!(
            entries(dest_backend.as_ref()),
            mirrored,
            "the mirror is as it was"
        );
        assert!(dest.verify().expect("verify").is_clean());
    }

    /// The change of a name whose versions are all files.
    fn change(name: &str, versions: &[u32], whole_name: bool) -> NameChange {
        NameChange {
            name: name.to_owned(),
            versions: versions
                .iter()
                .map(|&number| ChangedVersion {
                    number,
                    kind: EntryKind::File,
                })
                .collect(),
            whole_name,
        }
    }

    #[test]
    fn a_dry_run_lists_the_names_a_mirror_would_change_and_writes_nothing() {
        let (source, source_backend) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        run(&source, &dest, small()).expect("mirror");
        // Removed: a whole name, a version of a page, a version inline;
        // added: a name, a version.
        source.remove_name("docs/a", None).expect("rm docs/a");
        source.remove_name("log", Some(3)).expect("rm log@3");
        source.remove_name("log", Some(69)).expect("rm log@69");
        put(&source, "new", &bytes(30_000, 50));
        put(&source, "docs/b", &bytes(4_000, 51));
        let before = entries(dest_backend.as_ref());
        let dry = dry_run(&source, &dest, small(), REFUSE, &mut |_, _| {}).expect("dry run");
        assert!(dry.dry_run && dry.is_exact(), "{dry:?}");
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");
        assert_eq!(
            dry.names_removed,
            vec![
                change("docs/a", &[1, 2], true),
                change("log", &[3, 69], false)
            ]
        );
        assert_eq!(
            dry.names_added,
            vec![change("docs/b", &[2], false), change("new", &[1], true)]
        );
        // The mirror does what the dry run said.
        let done = run(&source, &dest, small()).expect("mirror");
        assert!(!done.dry_run && done.is_exact(), "{done:?}");
        assert_eq!(
            (done.copied, done.removed, done.bytes_written, done.present),
            (dry.copied, dry.removed, dry.bytes_written, dry.present)
        );
        assert!(dry.removed > 0 && dry.copied > 0, "{dry:?}");
        assert_eq!(done.names_removed, dry.names_removed);
        assert!(done.names_added.is_empty(), "only a dry run lists them");
        assert_eq!(
            entries(dest_backend.as_ref()),
            entries(source_backend.as_ref())
        );
    }

    /// Versions put into the destination after every version of the source
    /// (a failover to the mirror, or the two given the wrong way round): a
    /// dry run names them, the mirror refuses to remove them and writes
    /// nothing, and told to remove them it does, naming what went.
    #[test]
    fn destination_versions_newer_than_the_source_are_kept_unless_removal_is_asked() {
        let (source, source_backend) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        run(&source, &dest, small()).expect("mirror");
        // Times are in seconds: the next second is after every source
        // version.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        put(&dest, "fresh", &bytes(6_000, 70));
        put(&dest, "fresh", &bytes(6_000, 71));
        put(&dest, "docs/b", &bytes(6_000, 72));
        let before = entries(dest_backend.as_ref());
        let dry = dry_run(&source, &dest, small(), REFUSE, &mut |_, _| {}).expect("dry run");
        let lost = vec![
            change("docs/b", &[2], false),
            change("fresh", &[1, 2], true),
        ];
        assert_eq!(dry.names_removed, lost);
        assert_eq!(dry.newer_in_dest, lost, "every version lost is newer");
        let newest = source
            .list("")
            .expect("list")
            .iter()
            .flat_map(|r| r.versions.iter().map(|v| v.time))
            .max();
        assert_eq!(dry.source_newest, newest);
        assert!(dry.names_added.is_empty(), "{dry:?}");
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");

        match run(&source, &dest, small()) {
            Err(MirrorError::DestNewer { since, newer }) => {
                assert_eq!(newer, lost);
                assert_eq!(since, newest);
            }
            other => panic!("refused, not {other:?}"),
        }
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");

        // Versions the source lost since the last mirror are not newer: a
        // removal alone is mirrored as before.
        source.remove_name("docs/a", Some(1)).expect("rm docs/a@1");
        let dry = dry_run(&source, &dest, small(), REFUSE, &mut |_, _| {}).expect("dry run");
        assert_eq!(dry.newer_in_dest, lost, "only the newer ones: {dry:?}");
        assert!(dry.names_removed.contains(&change("docs/a", &[1], false)));

        let done = mirror(&source, &dest, small(), Newer::Remove, &mut |_, _| {})
            .expect("mirror told to remove newer versions");
        assert!(done.is_exact(), "{done:?}");
        assert_eq!(done.names_removed, dry.names_removed);
        assert_eq!(
            entries(dest_backend.as_ref()),
            entries(source_backend.as_ref())
        );
    }

    /// A failover: versions put into the mirror, then one into the source
    /// (its newest now after them). Knowing when the source's newest was
    /// put at the last mirror, the mirror still refuses to remove them.
    #[test]
    fn versions_put_into_the_mirror_after_the_last_mirror_are_kept_whatever_the_source_put_since() {
        let (source, _) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        let first = run(&source, &dest, small()).expect("mirror");
        let last_copy = first.source_newest;
        assert!(last_copy.is_some(), "{first:?}");
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        put(&dest, "failover", &bytes(6_000, 80));
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        put(&source, "heartbeat", &bytes(100, 81));
        let before = entries(dest_backend.as_ref());
        let kept = vec![change("failover", &[1], true)];

        let known = Newer::Refuse { last_copy };
        let dry = dry_run(&source, &dest, small(), known, &mut |_, _| {}).expect("dry run");
        assert_eq!(dry.newer_in_dest, kept, "{dry:?}");
        match mirror(&source, &dest, small(), known, &mut |_, _| {}) {
            Err(MirrorError::DestNewer { since, newer }) => {
                assert_eq!(newer, kept);
                assert_eq!(since, last_copy, "the last mirror's, the earlier");
            }
            other => panic!("refused, not {other:?}"),
        }
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");

        // Not knowing the last mirror, the source's newest hides them.
        let dry = dry_run(&source, &dest, small(), REFUSE, &mut |_, _| {}).expect("dry run");
        assert!(dry.newer_in_dest.is_empty(), "{dry:?}");
        assert!(dry.names_removed.contains(&change("failover", &[1], true)));
    }

    /// A source that holds no version (only unnamed contents, or nothing):
    /// every version of the destination is newer than all of its, and a
    /// mirror from it is refused.
    #[test]
    fn a_source_version_stamped_ahead_of_the_clock_does_not_hide_the_mirrors_own() {
        let (source, source_backend) = source();
        let before_first = newest_version(&source, u64::MAX).expect("newest").0;
        // docs/a's newest version, as a put under a clock three years
        // ahead stamps it.
        let key = source.catalog().key_of("docs/a");
        let mut record = source.lookup("docs/a").expect("lookup").expect("docs/a");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let stamped = record.versions.last_mut().expect("a version");
        stamped.time = now + 3 * 365 * 86_400;
        assert!(source_backend.tamper(&key, source.catalog().seal(&key, &record)));
        assert_eq!(
            newest_version(&source, u64::MAX).expect("newest").0,
            Some(now + 3 * 365 * 86_400)
        );

        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        let first = run(&source, &dest, small()).expect("mirror");
        assert_eq!(first.source_stamped_ahead, 1, "{first:?}");
        let newest = first.source_newest.expect("a newest version");
        assert!(newest <= now + 1, "not the one ahead: {newest}");
        assert!(before_first.is_some_and(|t| newest <= t), "{newest}");

        // A failover: the mirror written to directly, by a right clock.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        put(&dest, "failover", &bytes(6_000, 82));
        let before = entries(dest_backend.as_ref());
        match run(&source, &dest, small()) {
            Err(MirrorError::DestNewer { since, newer }) => {
                assert_eq!(newer, [change("failover", &[1], true)]);
                assert_eq!(since, Some(newest));
            }
            other => panic!("refused, not {other:?}"),
        }
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");
    }

    #[test]
    fn a_source_without_versions_never_empties_a_destination_unasked() {
        // A store of names, here the destination.
        let (dest, dest_backend) = source();
        let source = store_on(Arc::new(MemoryBackend::new()));
        source.put(&bytes(5_000, 9)).expect("put unnamed");
        let before = entries(dest_backend.as_ref());
        match run(&source, &dest, small()) {
            Err(MirrorError::DestNewer { since: None, newer }) => {
                assert_eq!(newer.len(), 3, "{newer:?}");
                assert!(newer.iter().all(|c| c.whole_name), "{newer:?}");
                let log = newer.iter().find(|c| c.name == "log").expect("log");
                assert_eq!(log.versions.len(), 69, "pages' versions too");
            }
            other => panic!("refused, not {other:?}"),
        }
        assert_eq!(entries(dest_backend.as_ref()), before, "nothing written");
    }

    /// A source damaged since its mirror: the dry run says the mirror
    /// would be left as it was, and writes nothing either.
    #[test]
    fn a_dry_run_from_a_damaged_source_says_the_mirror_would_be_left_as_it_was() {
        let (source, source_backend) = source();
        let dest_backend = Arc::new(MemoryBackend::new());
        let dest = store_on(dest_backend.clone());
        run(&source, &dest, small()).expect("mirror");
        let node = entries(source_backend.as_ref())
            .into_iter()
            .find(|(k, _)| !catalog::is_catalog_key(k))
            .expect("a node");
        let mut lost = Batch::new();
        lost.delete(node.0);
        source_backend.apply(&lost).expect("lose a node");
        let before = entries(dest_backend.as_ref());
        let dry = dry_run(&source, &dest, small(), REFUSE, &mut |_, _| {}).expect("dry run");
        assert!(dry.dry_run && dry.dest_left_as_it_was, "{dry:?}");
        assert!(!dry.source_damage.is_empty());
        assert_eq!(entries(dest_backend.as_ref()), before);
    }
}
