//! `seccs copy DEST`: make another store an exact mirror of this one, on
//! any backend. The mirror itself is `seccs_store::mirror`; this makes or
//! opens DEST, takes both stores as a writer, and reports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Result, bail};
use clap::Args;
use seccs_store::Store;
use seccs_store::backend::MemoryBackend;
use seccs_store::catalog::EntryKind;
use seccs_store::dir::{self, EMBEDDED, KeySource, StoreDir};
use seccs_store::mirror::{
    self, ChangedVersion, Limits, MirrorError, MirrorReport, NameChange, Newer,
};

use crate::open::{self, NewStore, StoreLocation};
use crate::progress;

/// What `seccs copy --help` says before the options (set on the
/// subcommand in main.rs, whose doc comment would replace it here).
pub const LONG_ABOUT: &str = "Make the store at DEST an exact mirror of this store (the one --store or \
$SECCS_STORE names): every version, name and reference count comes along, each entry copied as \
it is stored (nothing is read back as content or chunked again: under one key and one chunk \
size and wrapper, nodes have the same keys in both stores).\n\n\
Where DEST holds no store, copy makes one there as `seccs init` would (the backend reached \
before anything is written, a table or prefix that holds entries refused), with this store's \
chunk size, wrapper and compression, and its key: a key kept in a key file is copied to \
DEST/key (mode 0600); a key from the key service or the share network is named by DEST's \
config.toml as by this store's. --backend picks DEST's backend (default: embedded, in \
DEST/db). Where DEST holds a store, it must have this store's key, chunk size and wrapper \
(checked by their check values before anything is written), and its table or prefix must nest \
with no other store's.\n\n\
Run again, copy is incremental: it reads every entry of both stores, writes only those DEST \
lacks or holds otherwise, and removes from DEST what this store no longer holds (catalog \
records first, then nodes). Nodes are written before catalog records, so a copy cut off \
part way (Ctrl-C, a kill, a lost connection) leaves DEST with every catalog record whose \
nodes it holds; the same command run again finishes the mirror. DEST is an exact mirror \
only once copy exits 0.\n\n\
copy holds this store as a writer does (its lock and writer lease, as put and gc do; \
--lock-wait waits for another holder), so it does not change while it is copied, and DEST \
the same way. On a network backend, readers (get, ls, stat) of either store run beside \
it.\n\n\
The store copied is verified first, as `seccs verify` checks it. Where verify finds damage \
(a node lost or tampered with, a record or page that is not the one its name lists, a wrong \
count), copy prints verify's findings, exits 1, and only rescues: a DEST that holds entries is \
left as it was (its entries may be the only good copies of what the store copied lost), and \
into an empty DEST it copies every entry that authenticates but those verify names. Orphans, \
which `seccs gc` removes, are not damage.\n\n\
Every node and catalog record is authenticated under the store's key before it is copied, \
as verify opens them, and a name's record is copied with its pages in one batch: one that \
does not authenticate, or that the backend cannot decode, is not copied and is reported (DEST \
keeps what it held under that key), the rest is copied, and copy exits 1. A damaged store \
never makes a silently damaged mirror.\n\n\
Where the copy removes versions from DEST (names this store no longer holds, versions removed \
since), it prints one line for each after its summary: `removed: NAME@N`.\n\n\
copy does not remove, unasked, versions that only DEST holds: versions this store does not \
hold, put into DEST after this store's newest version, or after its newest at the last copy \
into DEST (which copy records in DEST/last-copy), whichever is earlier. Such versions mean \
DEST was written to directly (a failover to the mirror, found by the last copy's time even \
where this store was written to since), this store was restored from an older backup, or the \
two were given the wrong way round; or, the one false alarm, that this store's newest \
versions were removed since the last copy. Before anything is written, copy looks for them, \
and where there are any it lists them (`newer in DEST: NAME@N`) and exits 1, having written \
nothing. To keep them, save DEST whole first (`seccs --store DEST copy NEW-DIR`), then pass \
--remove-newer. What copy cannot tell: a store restored from an older backup and written to \
since looks like one whose versions were removed, and the copy removes from DEST what the \
backup lacks (run --dry-run after a restore); versions are stamped in seconds by the clock of \
the machine that put them, so one put into DEST within the second of that time, or under a \
clock set behind, is taken for older. A version of this store stamped after the clock of \
the machine copy runs on (put under a clock set ahead) is not taken as its newest, so it hides \
none of DEST's versions; copy says how many there are.\n\n\
--dry-run reads both stores and writes nothing: not to DEST nor its backend (a network DEST is \
opened as a reader, without its lock or writer lease), and a DEST that does not exist is not \
made. It verifies this store first as copy does, then prints what copy would do: \
`would remove: NAME@N` and `would add: NAME@N` for each version DEST would lose or gain \
(`would remove: NAME (the whole name, K versions)` where every version goes), in name order, \
then how many entries it would copy (and their bytes) and remove. For a DEST that does not \
exist it says what store would be made there. It also lists DEST's versions of its own, \
which copy would refuse to remove (`newer in DEST: NAME@N`). It exits 0 when it ran, \
whether or not there are changes, and 1 where copy would (a damaged store copied, an entry that would not be copied, \
versions of DEST's own without --remove-newer).";

/// `seccs copy`: mirror this store into DEST.
#[derive(Debug, Args)]
#[command(
    after_help = "Example: move an embedded store to Redis, then use the copy.\n\n  \
seccs --store ~/.local/share/seccs copy /srv/seccs-redis \\\n      \
--backend 'redis://127.0.0.1:6379/0?prefix=photos:'\n  \
seccs --store /srv/seccs-redis verify\n\n\
Keep an offsite mirror up to date: run `seccs copy /mnt/offsite/seccs` again; it writes \
what changed since.\n\n\
Mind the direction: copy makes DEST like this store and removes from DEST every name and \
version this store does not hold. Run the wrong way round (the old mirror as --store, the \
newer store as DEST), it refuses, since DEST then holds versions put after this store's \
newest; but DEST versions put before it that this store does not hold go without asking. \
Before a first copy into a DEST that holds a store, look first:\n\n  \
seccs copy /mnt/offsite/seccs --dry-run\n\n\
It lists the versions DEST would lose (`would remove: NAME@N`) and gain, and writes \
nothing.\n\n\
Exits 0 when DEST is an exact mirror, 1 when an entry could not be copied (after copying \
the rest), when the store copied is damaged (copy then only rescues), when DEST holds versions \
of its own (nothing written); 2 when it could not run or stopped part way (a usage error, \
a store it cannot open, a backend that fails), with --json then {\"error\", \"exit\"}. With \
--dry-run: 0 when the dry run ran, 1 where copy would exit 1 for the store copied (damage, \
an entry that would not be copied) or where DEST holds versions of its own (without \
--remove-newer), 2 when it cannot run."
)]
pub struct CopyArgs {
    /// The destination store directory: a store is made there if there is
    /// none.
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// The backend of a new DEST, as `seccs init --backend` takes it:
    /// `embedded` (default, in DEST/db) or a redis://, postgres:// or s3://
    /// URL. Refused when DEST holds a store already (it keeps its own).
    #[arg(long, value_name = "URL")]
    backend: Option<String>,
    /// Write nothing: read both stores and say what copy would copy, remove
    /// and make, and which versions of which names DEST would lose
    /// (`would remove: NAME@N`) or gain (`would add: NAME@N`).
    #[arg(long)]
    dry_run: bool,
    /// Remove from DEST, as any version this store does not hold, the
    /// versions put into DEST itself (after this store's newest, or after
    /// the last copy), which copy otherwise refuses to remove (see above).
    /// Look with --dry-run first.
    #[arg(long)]
    remove_newer: bool,
    /// No progress on standard error.
    #[arg(short, long)]
    quiet: bool,
    /// Print the report as one JSON object: {"read" (entries of this store
    /// read), "copied" (entries written to DEST), "present" (entries DEST
    /// held already), "removed" (entries removed from DEST),
    /// "bytes_written", "findings": [{"kind", "key", ...}], "source_damage":
    /// [verify's lines], "dest_left_as_it_was", "dry_run", "names_removed":
    /// [{"name", "versions": [N, ...], "whole_name"}] (versions DEST lost,
    /// in name order; whole_name: this store holds no version of it),
    /// "names_added" (the same, versions DEST would gain: a dry run's
    /// only), "source_newest" (when this store's newest version was put,
    /// seconds since the epoch, or null), "source_stamped_ahead" (how many
    /// of this store's newest versions are stamped after this machine's
    /// clock, and so not taken as its newest), "newer_in_dest" (DEST's versions
    /// of its own, as names_removed lists them: a dry run's only)}. Where
    /// copy refuses those (no --remove-newer), it prints {"refused":
    /// "newer-in-dest", "since" (the time they were put after),
    /// "newer_in_dest"} instead. With --dry-run the
    /// counts are what copy would do, and
    /// "would_make" is {"path", "backend", "chunk_size", "wrapper",
    /// "compression", "key"} for a DEST that does not exist, null for one
    /// that does. Where source_damage is not
    /// empty, copy only rescued (see above). A finding's
    /// kind is tampered, bad-record or unreadable (an entry of this store,
    /// not copied), or dest-unreadable (an entry of DEST it cannot decode,
    /// left there).
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// Runs `seccs copy`.
pub fn run(loc: &StoreLocation, args: CopyArgs) -> Result<()> {
    let dest_path = &args.dest;
    // A DEST whose making a stopped copy left unfinished is made afresh.
    let dest_exists = StoreDir::exists(dest_path) && StoreDir::unfinished(dest_path).is_none();
    if dest_exists && args.backend.is_some() {
        // A usage error, said before any store is opened.
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--backend is only for a new DEST, and {} holds a store already (it keeps its \
                 own backend); leave --backend out to copy into it\n",
                dest_path.display()
            ),
        )
        .exit();
    }
    let source_path = loc.path()?;
    if same_directory(&source_path, dest_path) {
        bail!(
            "{} is the store being copied: give copy another directory as DEST",
            dest_path.display()
        );
    }
    let (source, key) = open::open_keeping_key(loc)?;
    if args.dry_run {
        return dry_run(loc, &args, &source, &key, dest_exists);
    }
    let source_config = source.dir.config().clone();
    let dest = if dest_exists {
        open::open_with_key(dest_path, &key, loc.lock_wait, |dest| {
            check_matches(&source_config, dest, &key)
        })
        .map_err(|e| itself_named_otherwise(e, dest_path))?
    } else {
        let backend = args.backend.clone().unwrap_or_else(|| EMBEDDED.to_owned());
        let (made, key) = open::create(
            dest_path,
            NewStore {
                params: source_config.params()?,
                backend: backend.clone(),
                key: dest_key_source(&source.dir)?,
                share_password_file: loc.share_password_file(),
                existing_key: Some(key.clone()),
                lock_wait: loc.lock_wait,
            },
        )
        .map_err(|e| itself_named_otherwise(e, dest_path))?;
        let key_said = match &made.config().key {
            KeySource::File { path } => {
                format!("a copy of its key in {}", made.resolve(path).display())
            }
            _ => "its key from where the source's comes from".to_owned(),
        };
        errln!(
            "seccs: created a store at {} (backend {}) with the source's parameters and {key_said}",
            dest_path.display(),
            seccs_backends::redact(&backend),
        );
        open::open_made(made, &key)?
    };
    drop(key);
    let spinner = progress::spinner("copying", args.quiet);
    let newer = newer_rule(&args, &dest.dir)?;
    let mirrored = mirror::mirror(
        &source.store,
        &dest.store,
        Limits::default(),
        newer,
        &mut progress_line(&spinner, false),
    );
    spinner.finish_and_clear();
    let report = match mirrored {
        Err(MirrorError::DestNewer { since, newer }) => return refuse_newer(&args, since, &newer),
        other => other?,
    };
    note_stamped_ahead(&report);
    if report.is_exact()
        && let Some(newest) = report.source_newest
    {
        // What the next copy tells versions put into DEST itself by.
        dest.dir.record_last_copy(newest)?;
    }
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "copied {} {} ({} bytes written), {} already present, {} removed",
            report.copied,
            crate::tree::entries(report.copied),
            report.bytes_written,
            report.present,
            report.removed
        )?;
        for line in &report.source_damage {
            outln!("source damage: {line}")?;
        }
        for finding in &report.findings {
            outln!("{finding}")?;
        }
        for change in &report.names_removed {
            for version in &change.versions {
                outln!("removed: {}", shown(&change.name, version))?;
            }
        }
    }
    let dest_shown = dest_path.display();
    if report.dest_left_as_it_was {
        problems!(
            "the store copied is damaged ({} finding(s) of `seccs verify`, listed above): copy \
             wrote nothing into {dest_shown}, whose entries may be the only good copies of what \
             the store copied lost. Repair the store copied (`seccs gc`) and run copy again, or \
             copy {dest_shown} back into a new directory",
            report.source_damage.len()
        );
    }
    if !report.source_damage.is_empty() {
        problems!(
            "the store copied is damaged ({} finding(s) of `seccs verify`, listed above): copy \
             rescued into {dest_shown}, which held nothing, every entry that authenticates but \
             those verify names; {dest_shown} is not an exact mirror, and holds the damage \
             listed (`seccs verify` on it names what is left)",
            report.source_damage.len()
        );
    }
    if !report.is_exact() {
        let dest_damaged = report
            .findings
            .iter()
            .any(|f| matches!(f, mirror::MirrorFinding::DestUnreadable { .. }));
        let verify = match dest_damaged {
            true => format!("`seccs verify` on the store copied, and on {dest_shown},"),
            false => "`seccs verify` on the store copied".to_owned(),
        };
        problems!(
            "{} entr(ies) could not be copied or removed (listed above): {dest_shown} is not an \
             exact mirror; {verify} names the damage",
            report.findings.len(),
        );
    }
    Ok(())
}

/// What the mirror does with DEST's versions of its own (see
/// [`mirror::Newer`]): removed with --remove-newer, else refused, told by
/// the last copy into DEST where its directory recorded one.
fn newer_rule(args: &CopyArgs, dest: &StoreDir) -> Result<Newer> {
    Ok(match args.remove_newer {
        true => Newer::Remove,
        false => Newer::Refuse {
            last_copy: dest.last_copy()?,
        },
    })
}

/// Lists DEST's versions of its own (with --json, as `{"refused":
/// "newer-in-dest", "since", "newer_in_dest"}`), and fails saying why copy
/// wrote nothing.
fn refuse_newer(args: &CopyArgs, since: Option<u64>, newer: &[NameChange]) -> Result<()> {
    if args.json {
        let shown = serde_json::json!({
            "refused": "newer-in-dest",
            "since": since,
            "newer_in_dest": newer,
        });
        outln!("{shown}")?;
    } else {
        for line in newer_lines(newer) {
            outln!("{line}")?;
        }
    }
    problems!("{}", newer_refusal(&args.dest, since, newer, false))
}

/// What the spinner says as the mirror (or its dry run) goes.
fn progress_line(
    spinner: &indicatif::ProgressBar,
    dry_run: bool,
) -> impl FnMut(mirror::Phase, &MirrorReport) + '_ {
    move |phase, r| {
        spinner.set_message(match dry_run {
            false => format!(
                "{phase}: {} read, {} copied, {} already present, {} removed",
                r.read, r.copied, r.present, r.removed
            ),
            true => format!(
                "{phase} (dry run): {} read, {} to copy, {} already present, {} to remove",
                r.read, r.copied, r.present, r.removed
            ),
        });
    }
}

/// Says, on standard error, how many of the store's newest versions are
/// stamped after this machine's clock, which copy does not take as its
/// newest.
fn note_stamped_ahead(report: &MirrorReport) {
    if report.source_stamped_ahead > 0 {
        errln!(
            "seccs: note: {} version(s) of this store are stamped after this machine's clock \
             (put under a clock set ahead, or on a machine whose clock is ahead of this one's); \
             copy did not take them as the store's newest",
            report.source_stamped_ahead
        );
    }
}

/// A version in a line of copy's output, `NAME@N` (`NAME/@N` for a
/// directory's), with the name escaped as `ls` shows it, so that no name
/// can forge a line or send the terminal an escape sequence.
fn shown(name: &str, version: &ChangedVersion) -> String {
    format!(
        "{}@{}",
        crate::tree::shown_name(name, version.kind),
        version.number
    )
}

/// A name that comes or goes whole, shown as its newest version's kind.
fn shown_whole(change: &NameChange) -> String {
    let kind = change
        .versions
        .last()
        .map_or(EntryKind::File, |version| version.kind);
    crate::tree::shown_name(&change.name, kind)
}

/// `newer in DEST: NAME@N` for each version listed.
fn newer_lines(newer: &[NameChange]) -> Vec<String> {
    newer
        .iter()
        .flat_map(|c| {
            c.versions
                .iter()
                .map(move |v| format!("newer in DEST: {}", shown(&c.name, v)))
        })
        .collect()
}

/// Why copy refuses (or, in a dry run, would refuse) DEST's versions of
/// its own, and what to do.
fn newer_refusal(dest: &Path, since: Option<u64>, newer: &[NameChange], dry_run: bool) -> String {
    let versions: usize = newer.iter().map(|c| c.versions.len()).sum();
    let after = match since {
        Some(time) => format!(
            "put after {} (the newest version of the store copied, or its newest at the last \
             copy into {}, whichever is earlier)",
            crate::store::format_time(time),
            dest.display()
        ),
        None => "put while the store copied holds no version at all".to_owned(),
    };
    let done = match dry_run {
        true => {
            "copy would refuse to remove them and write nothing (this dry run wrote nothing \
                 either)"
        }
        false => "copy would remove them, so it wrote nothing",
    };
    let dest = dest.display();
    format!(
        "{dest} holds {versions} version(s) of {} name(s) that the store copied does not hold, \
         {after}, listed above: {done}. They were put into {dest} itself (a failover to the \
         mirror), or the store copied was restored from an older backup or had them removed \
         since, or the two are given the wrong way round. To keep them, save {dest} whole \
         first (`seccs --store {dest} copy NEW-DIR`) and put what is needed from it into the \
         store copied; then run copy again with --remove-newer to remove them from {dest}",
        newer.len()
    )
}

/// `seccs copy --dry-run`: what the copy would do, from a dry run of the
/// mirror against DEST opened to be looked at only, or, where DEST does not
/// exist, against an empty store in memory with its parameters and key.
fn dry_run(
    loc: &StoreLocation,
    args: &CopyArgs,
    source: &open::OpenStore,
    key: &seccs_core::SecretKey,
    dest_exists: bool,
) -> Result<()> {
    let dest_path = &args.dest;
    let source_config = source.dir.config().clone();
    let inspected;
    let empty;
    // A DEST made afresh holds no version of its own.
    let mut newer = match args.remove_newer {
        true => Newer::Remove,
        false => Newer::Refuse { last_copy: None },
    };
    let mut would_make = serde_json::Value::Null;
    let dest: &Store = if dest_exists {
        inspected = open::open_with_key_to_inspect(dest_path, key, loc.lock_wait, |dest| {
            check_matches(&source_config, dest, key)
        })
        .map_err(|e| itself_named_otherwise(e, dest_path))?;
        newer = newer_rule(args, &inspected.dir)?;
        &inspected.store
    } else {
        let backend = args.backend.clone().unwrap_or_else(|| EMBEDDED.to_owned());
        // What a stopped copy left there, the real copy removes first
        // (it says what): only a place that holds no store is checked.
        if StoreDir::unfinished(dest_path).is_none() {
            open::check_new_place(dest_path, &backend)?;
        }
        let params = source_config.params()?;
        empty = Store::open(Arc::new(MemoryBackend::new()), params, key)?;
        let key_said = match dest_key_source(&source.dir)? {
            KeySource::File { path } => format!(
                "a copy of this store's key in {}",
                dest_path.join(path).display()
            ),
            KeySource::Kms {
                server, kek_file, ..
            } => format!(
                "from the key service {} (KEK file {}), as this store's",
                seccs_core::redact::url_password(&server),
                kek_file.display()
            ),
            KeySource::Share { tag, .. } => {
                format!("from the share network (tag {tag:?}), as this store's")
            }
        };
        let backend_shown = match backend.as_str() {
            EMBEDDED => format!("{EMBEDDED}, in {}", dest_path.join("db").display()),
            url => seccs_backends::redact(url),
        };
        would_make = serde_json::json!({
            "path": dest_path.display().to_string(),
            "backend": seccs_backends::redact(&backend),
            "chunk_size": source_config.chunk_size,
            "wrapper": source_config.wrapper,
            "compression": source_config.compression,
            "key": key_said,
        });
        if !args.json {
            outln!(
                "would make: a store at {} (backend {backend_shown}; chunk size {}, wrapper {}, \
                 compression {}; key {key_said})",
                dest_path.display(),
                source_config.chunk_size,
                source_config.wrapper,
                source_config.compression,
            )?;
        }
        &empty
    };
    let spinner = progress::spinner("dry run", args.quiet);
    let report = mirror::dry_run(
        &source.store,
        dest,
        Limits::default(),
        newer,
        &mut progress_line(&spinner, true),
    )?;
    spinner.finish_and_clear();
    note_stamped_ahead(&report);
    if args.json {
        let mut shown = serde_json::to_value(&report)?;
        if let Some(object) = shown.as_object_mut() {
            object.insert("would_make".to_owned(), would_make);
        }
        outln!("{}", serde_json::to_string(&shown)?)?;
    } else {
        for line in dry_run_lines(&report) {
            outln!("{line}")?;
        }
        for line in newer_lines(&report.newer_in_dest) {
            outln!("{line}")?;
        }
        for line in &report.source_damage {
            outln!("source damage: {line}")?;
        }
        for finding in &report.findings {
            outln!("{finding}")?;
        }
    }
    let dest_shown = dest_path.display();
    if report.dest_left_as_it_was {
        problems!(
            "the store copied is damaged ({} finding(s) of `seccs verify`, listed above): copy \
             would write nothing into {dest_shown}, whose entries may be the only good copies of \
             what the store copied lost (this dry run wrote nothing either). Repair the store \
             copied (`seccs gc`) first, or copy {dest_shown} back into a new directory",
            report.source_damage.len()
        );
    }
    if !report.source_damage.is_empty() {
        problems!(
            "the store copied is damaged ({} finding(s) of `seccs verify`, listed above): copy \
             would only rescue into {dest_shown}, which holds nothing, every entry that \
             authenticates but those verify names (counted above); nothing was written",
            report.source_damage.len()
        );
    }
    if !report.newer_in_dest.is_empty() && !args.remove_newer {
        problems!(
            "{}",
            newer_refusal(
                dest_path,
                newer.refused_after(report.source_newest),
                &report.newer_in_dest,
                true
            )
        );
    }
    if !report.is_exact() {
        problems!(
            "{} entr(ies) would not be copied or removed (listed above): copy would leave \
             {dest_shown} short of an exact mirror; `seccs verify` on the store copied names the \
             damage. Nothing was written",
            report.findings.len(),
        );
    }
    Ok(())
}

/// A dry run's report as text: `would remove:` and `would add:` lines in
/// name order (a name's removals first), then the summary.
fn dry_run_lines(report: &MirrorReport) -> Vec<String> {
    let mut changes: Vec<(&NameChange, &str)> = report
        .names_removed
        .iter()
        .map(|c| (c, "remove"))
        .chain(report.names_added.iter().map(|c| (c, "add")))
        .collect();
    // Stable: a name's removals stay before its additions.
    changes.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut lines = Vec::new();
    for (change, what) in changes {
        if change.whole_name {
            let n = change.versions.len();
            let s = if n == 1 { "" } else { "s" };
            lines.push(format!(
                "would {what}: {} (the whole name, {n} version{s})",
                shown_whole(change)
            ));
        } else {
            for version in &change.versions {
                lines.push(format!("would {what}: {}", shown(&change.name, version)));
            }
        }
    }
    let count = |changes: &[NameChange]| {
        (
            changes.len(),
            changes.iter().map(|c| c.versions.len()).sum::<usize>(),
        )
    };
    let (lose, lost) = count(&report.names_removed);
    let (gain, gained) = count(&report.names_added);
    lines.push(format!(
        "dry run, nothing written: would copy {} {} ({} bytes), {} already present, would \
         remove {}; {lose} name(s) would lose {lost} version(s), {gain} name(s) would gain \
         {gained} version(s)",
        report.copied,
        crate::tree::entries(report.copied),
        report.bytes_written,
        report.present,
        report.removed
    ));
    lines
}

/// A DEST whose backend is the source's, named another way (another host
/// name for the same server, parameters in another order), finds the
/// source's writer lease held by this very process: said as what it is,
/// rather than as a store in use by another handle.
fn itself_named_otherwise(e: anyhow::Error, dest: &Path) -> anyhow::Error {
    if open::lock_holder(&e) == Some(open::LockHolder::ThisProcess) {
        anyhow::anyhow!(
            "{}: its backend is the store being copied, named another way (the same server and \
             table or prefix); nothing was written. Give copy another table or prefix",
            dest.display()
        )
    } else {
        e
    }
}

/// Whether `a` and `b` are one directory (both there, the same once
/// links are followed).
fn same_directory(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses an existing DEST whose key, chunk size, wrapper or backend
/// cannot take this store's entries, saying which; before its backend is
/// touched.
fn check_matches(
    source: &dir::StoreConfig,
    dest: &StoreDir,
    key: &seccs_core::SecretKey,
) -> Result<()> {
    let shown = dest.path().display();
    let config = dest.config();
    if config
        .key_check
        .as_ref()
        .is_some_and(|check| *check != dir::key_check(key))
    {
        bail!(
            "the store at {shown} has another key than the store copied (their key check values \
             differ), so it cannot hold its entries; nothing was written. Give copy a new \
             directory: it makes the store there with this store's key"
        );
    }
    for (what, ours, theirs) in [
        (
            "chunk size",
            source.chunk_size.to_string(),
            config.chunk_size.to_string(),
        ),
        ("wrapper", source.wrapper.clone(), config.wrapper.clone()),
    ] {
        if ours != theirs {
            bail!(
                "the store at {shown} has {what} {theirs}, the store copied {ours}: nodes made \
                 with one are not the other's; nothing was written. Give copy a new directory: \
                 it makes the store there with this store's parameters"
            );
        }
    }
    if config.backend != EMBEDDED && config.backend == source.backend {
        bail!(
            "the store at {shown} is on the backend of the store copied ({}): it is that store, \
             not a copy of it; nothing was written",
            seccs_backends::redact(&config.backend)
        );
    }
    Ok(())
}

/// The key source of a copy of the store in `source`: a key file becomes
/// the copy's own (DEST/key); the key service and the share network are
/// named as the source names them, paths made absolute (a relative one is
/// the source directory's).
fn dest_key_source(source: &StoreDir) -> Result<KeySource> {
    let absolute = |p: &Path| std::path::absolute(source.resolve(p));
    Ok(match &source.config().key {
        KeySource::File { .. } => KeySource::File {
            path: PathBuf::from("key"),
        },
        KeySource::Kms {
            server,
            kek_file,
            ca,
            pin,
            salt,
        } => KeySource::Kms {
            server: server.clone(),
            kek_file: absolute(kek_file)?,
            ca: ca.as_deref().map(absolute).transpose()?,
            pin: pin.clone(),
            salt: salt.clone(),
        },
        KeySource::Share { tag, config } => KeySource::Share {
            tag: tag.clone(),
            config: absolute(config)?,
        },
    })
}
