//! The content store's commands: `init`, `put`, `get`, `rm`, `stat`.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use seccs_store::catalog::{EntryKind, FileMeta, Record, Stamp, Version, parse_name_version};
use seccs_store::dir::{EMBEDDED, KeySource};
use seccs_store::{
    Compression, ContentRef, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, Params, StoreError, WrapperKind,
};

use crate::open::{self, NewStore, StoreLocation};
use crate::progress;

/// `seccs init`: create a store.
#[derive(Debug, Args)]
#[command(
    after_help = "An init stopped part way (killed, or a power loss) leaves config.toml marked \
`unfinished`: every command then refuses the store, saying so. Run the same init again: it \
removes what the stopped one made (its key file, its empty database, its marker on an empty \
backend), says so, and makes the store afresh; a database or backend that holds entries is \
refused and kept.\n\n\
A store whose directory was lost (its config.toml) is opened again with `seccs init --attach`, \
given its backend and its key: its chunk size, wrapper, compression and key-service salt come \
from the descriptor its backend keeps. See --attach, and \"Recovering a store\" in the README."
)]
pub struct InitArgs {
    /// Make DIR/config.toml for a store that exists, whose directory was
    /// lost, instead of a new store: nothing else is made (no key, no
    /// marker). A network backend must hold the store's marker, written
    /// when it was made, and it must be the key's (one made by a build
    /// before markers, with entries but none, is marked once the key opens
    /// its catalog records, as its first open does); an embedded store
    /// needs its database kept in DIR/db. The key is read from
    /// --key-file PATH (default DIR/key), loaded from the share network
    /// (--key-from-share TAG) or fetched from the key service
    /// (--key-from-kms URL --kek FILE [--kms-salt HEX]), and must open the
    /// store, else DIR is left as it was. The chunk size, wrapper,
    /// compression and key-service salt come from the descriptor the
    /// backend keeps beside the store's entries (written by every writer
    /// of a store whose parameters are confirmed), once the key
    /// authenticates it; any given must agree with it. A store whose
    /// backend keeps none (made before descriptors, not opened by a writer
    /// since) takes those given, or the defaults; one whose descriptor does
    /// not read as one or authenticate needs all three given. Give the
    /// store's own (a
    /// wrong wrapper makes every node fail to authenticate, a wrong chunk
    /// size may go unseen), then run `seccs verify`, which reads every node
    /// with them and, when clean, records them as the store's.
    #[arg(long)]
    attach: bool,
    /// With --attach and --key-from-kms: the store's key-service salt, the
    /// 32 hex digits of `salt` under `[key]` in its config.toml (the store
    /// key is derived from the DEK with it). Needed only where the backend
    /// keeps no descriptor that records it, or one changed on the backend.
    #[arg(
        long,
        value_name = "HEX",
        requires = "attach",
        requires = "key_from_kms"
    )]
    kms_salt: Option<String>,
    /// Target chunk size S in bytes (at least twice the reference size: 48
    /// for aes-siv, 80 for the SHA-256 based wrappers; at most 1048576).
    /// Default: 4096 (with --attach: the store's own, from its backend's
    /// descriptor).
    #[arg(long, value_name = "N", value_parser = chunk_size_arg())]
    chunk_size: Option<usize>,
    /// How nodes are sealed: aes-siv (encrypted, default), aes-siv-dr,
    /// hmac-sha-256, hmac-sha-256-dr (authenticated, not encrypted), sha-256
    /// (integrity only). With --attach: the store's own, from its backend's
    /// descriptor.
    #[arg(long, value_name = "NAME")]
    wrapper: Option<WrapperKind>,
    /// Leaf compression: `zstd` (default, level 3), `zstd:LEVEL` (1-19) or
    /// `none`. Compressed lengths reveal how well each node compresses, as in
    /// restic and borg; `none` avoids that. With --attach: the store's own,
    /// from its backend's descriptor.
    #[arg(long, value_name = "MODE")]
    compression: Option<Compression>,
    /// Where to write the new store key (mode 0600): a relative PATH is
    /// taken from the current directory, and recorded whole in the config.
    /// Default: DIR/key. With --attach: the store's kept key file, which
    /// must exist and is only read.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Where the encrypted nodes live: `embedded` (default, in DIR/db), or a
    /// URL such as redis://127.0.0.1:6379/0, postgres://USER@HOST/DB,
    /// s3://BUCKET/PREFIX?endpoint=URL&region=R. Credentials come from the
    /// environment, never from the config.
    ///
    /// `redis://[USER@]HOST[:PORT][/DB][?prefix=P]` (`rediss://` for TLS): P
    /// keeps stores apart in one database; end it with `:`, and keep
    /// prefixes from nesting. REDIS_USERNAME, REDIS_PASSWORD.
    ///
    /// `postgres://[USER@]HOST[:PORT]/DB[?table=T&sslmode=M&sslrootcert=FILE&connect_timeout=S]`:
    /// one table per store (default seccs_nodes); sslmode is disable, prefer
    /// (the default) or require (verify-full is the same), and TLS always
    /// verifies the server's certificate and name (against FILE, else the
    /// system's roots), as libpq's verify-full. PGUSER, PGPASSWORD.
    ///
    /// `s3://BUCKET/PREFIX[?endpoint=URL&region=R&concurrency=N]`: one folder
    /// per store; the service needs conditional writes. AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY or ~/.aws/credentials.
    #[arg(long, default_value = EMBEDDED, value_name = "URL")]
    backend: String,
    /// Keep the store key on the share network under TAG (split t-of-n
    /// across its servers), so no single machine holds it. The password is
    /// read at init and every open from --share-password-file FILE (or
    /// SECCS_SHARE_PASSWORD_FILE), which unattended jobs should prefer,
    /// else SECCS_SHARE_PASSWORD, else a prompt.
    /// Under the default threshold (n/2 + 1 of the servers online), init is
    /// refused when it would need every server online (2 of 3 up: 2-of-2),
    /// since losing any one's disk would lose the store; set threshold in
    /// the share config to accept that. The tag's version 1 is the store's
    /// only key: `seccs share rm TAG` (or TAG@1) makes the store unopenable
    /// for good, without asking.
    #[arg(long, value_name = "TAG", conflicts_with = "key_file")]
    key_from_share: Option<String>,
    /// Take the store key from the key service at URL: the store key is
    /// derived (HKDF, with a random salt kept in config.toml) from the DEK
    /// the service holds for the KEK in --kek FILE, so that stores made
    /// with one KEK get keys of their own. The store keeps only where the
    /// KEK is and the salt, never the DEK.
    #[arg(long, value_name = "URL", requires = "kek", conflicts_with_all = ["key_file", "key_from_share"])]
    key_from_kms: Option<String>,
    /// The KEK file for --key-from-kms (32 raw bytes or 64 hex digits, as
    /// `seccs kms new` writes it).
    #[arg(long, value_name = "FILE", requires = "key_from_kms")]
    kek: Option<PathBuf>,
    /// A CA certificate to trust for --key-from-kms. Also read from
    /// SECCS_KMS_CA, as by the `seccs kms` commands, unless --kms-pin is
    /// given (SECCS_KMS_CA and SECCS_KMS_PIN both set are refused; an empty
    /// variable is unset). The one used is kept in config.toml for every
    /// later open.
    #[arg(long, value_name = "FILE", requires = "key_from_kms")]
    kms_ca: Option<PathBuf>,
    /// A pinned SHA-256 certificate fingerprint for --key-from-kms (instead
    /// of --kms-ca: a pin trusts that one certificate only). Also read from
    /// SECCS_KMS_PIN, unless --kms-ca is given.
    #[arg(
        long,
        value_name = "SHA256",
        requires = "key_from_kms",
        conflicts_with = "kms_ca"
    )]
    kms_pin: Option<String>,
    /// The share client config for --key-from-share.
    #[arg(long, value_name = "FILE", requires = "key_from_share")]
    share_config: Option<PathBuf>,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs put`: store a file, standard input, or a directory tree.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The file to store, `-` for standard input, or a directory: it and
    /// every regular file, symlink and directory under it are stored, named
    /// by its path as given (normalized like tar: no leading `/`, `./` or
    /// `../`), with its permission bits and modification time. Names
    /// under the directory whose files are no longer there are marked gone:
    /// `ls` and `get DIR/` leave them out, `ls --all` and `get NAME@N`
    /// still reach their versions. A file written while it is read is
    /// stored as read and reported (non-zero exit); the next put reads it
    /// again. Sockets, FIFOs and devices under DIR are named and not
    /// stored (as tar ignores a socket; the exit code stays 0). A file
    /// name's bytes are kept as they are, UTF-8 or not.
    file: PathBuf,
    /// Store under NAME (a file or stdin), a relative path such as
    /// `docs/a.txt` (no leading `/`, no empty, `.` or `..` component, none
    /// longer than 255 bytes, which no restore could write as a file). An
    /// existing NAME keeps its older versions: read them with `seccs get
    /// NAME@N`. Its bytes need not be UTF-8 (`$'caf\xe9'`).
    #[arg(long, value_name = "NAME", value_parser = new_name_arg())]
    name: Option<String>,
    /// For a directory: read every file, even one whose size, times and
    /// inode match what the store recorded when it last read it (by
    /// default such a file is taken as unchanged and not read again).
    #[arg(long)]
    force: bool,
    /// For a directory: leave out what PATTERN matches (repeatable). A
    /// pattern without `/` matches a file's or directory's own name at any
    /// depth (`target`, `*.o`, `.git`); one with `/` matches the whole name
    /// as `seccs ls` shows it (`photos/2024/tmp`, `src/**/cache`), as one
    /// with a leading `/` does (`/proj/build` is that name only); a
    /// trailing `/` matches directories only. `*` and `?` stay within one
    /// path component, `**` crosses them; `?` and `[…]` match one
    /// character, `é` too. An excluded directory is not
    /// entered; names stored by an earlier put that are now excluded are
    /// marked gone, like deleted files.
    #[arg(long, value_name = "PATTERN", value_parser = name_arg())]
    exclude: Vec<String>,
    /// For a directory: read more --exclude patterns from FILE, one per
    /// line; blank lines and lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE")]
    exclude_from: Vec<PathBuf>,
    /// For a directory: print what a put would do, and do nothing: `read`
    /// or `unchanged` for each entry, `skip` for each it would leave out (a
    /// socket, FIFO or device, or the store's own directory), `gone` for
    /// each name it would mark gone. Needs an existing store.
    #[arg(long)]
    dry_run: bool,
    /// For a directory: stay on its file system. A directory on another
    /// (a mount point, such as /proc under /) is recorded empty and not
    /// entered, as `tar --one-file-system` does; names an earlier put stored
    /// under it are marked gone.
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs get`: read a content back.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// A content reference (hex, as `seccs put` printed it), a NAME (its
    /// newest version), NAME@N (version N; a directory's version, shown as
    /// NAME/@N, has no content: restore it with PREFIX/ and --at), or
    /// PREFIX/ (every name under PREFIX/, or the
    /// empty directory PREFIX, restored as a tree into the -o directory). A
    /// symlink comes back as a symlink at -o FILE, as its target's bytes on
    /// standard output. A name is typed as listings show it, in the
    /// shell's `$'…'` quoting where they show `\xNN` or `\n`.
    #[arg(value_parser = name_arg())]
    reference: String,
    /// Write to FILE instead of standard output (`-` is standard output;
    /// for PREFIX/: the directory to restore into). A file appears only when its whole content was read
    /// and authenticated. A named file (NAME, NAME@N, PREFIX/) gets back the
    /// permission bits and modification time it was put with; a content
    /// without them (a REF, a --range) keeps the bits of a file it
    /// replaces, and a new one is made 0600 whatever the umask, as
    /// decrypted data should not be readable by others unless asked. Standard
    /// output gets each chunk once it is authenticated, so a failure part
    /// way through leaves a prefix of the content there (never a forged
    /// byte) and a non-zero exit. A symlink at FILE is replaced by the
    /// file, never written through, as tar does. A FILE or DIR in the
    /// store's directory, or at its key file (a link at FILE that points
    /// there too), is refused, and so is each name of a tree that would
    /// land in the store's directory.
    #[arg(short, long, visible_alias = "out", value_name = "FILE")]
    output: Option<PathBuf>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Read only LEN bytes from OFFSET. A range past the end is refused,
    /// as is --range for a tree.
    #[arg(long, value_name = "OFFSET:LEN", value_parser = parse_range)]
    range: Option<(u64, u64)>,
    /// For a NAME or PREFIX/: what it held at TIME, a UTC time as `seccs
    /// ls` prints it (`2026-12-02 14:14:22Z`, or with a `T`) or seconds
    /// since the epoch. Each name gives its newest version put by then,
    /// and names that were not there then (not put yet, or gone from
    /// their directory) are left out: a tree comes back as it was.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    at: Option<u64>,
    /// For PREFIX/: leave out what PATTERN matches (repeatable), with the
    /// rules of `seccs put DIR --exclude`, applied to the names as `seccs
    /// ls` shows them; an excluded directory leaves out everything under it.
    #[arg(long, value_name = "PATTERN", value_parser = name_arg())]
    exclude: Vec<String>,
    /// Run as root: leave what is restored owned by root, not by the owner
    /// and group it was put with (root's default, as tar's). Anyone else
    /// owns what they restore in any case.
    #[arg(long)]
    no_same_owner: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs rm`: undo one put, remove a name, a tree, or the names that are
/// gone.
#[derive(Debug, Args)]
// One of the three is needed, and the usage says so: a reference marked
// required unless --gone or --keep is shown, and asked for, as required
// alone.
#[command(group(
    clap::ArgGroup::new("what")
        .required(true)
        .multiple(true)
        .args(["reference", "gone", "keep"])
))]
pub struct RmArgs {
    /// A content reference (undoes one put of it without a name), a NAME (removes every
    /// version), NAME@N or NAME/@N (removes version N), or PREFIX/ (removes every
    /// version of every name under PREFIX/, and the directory PREFIX if
    /// `put DIR` recorded it). With --gone: only names under
    /// this prefix (default: all). A name whose every version is removed is
    /// gone: a later put of it starts again at version 1, so a NAME@N
    /// noted before then may name other content.
    #[arg(value_parser = name_arg())]
    reference: Option<String>,
    /// Remove every version of the names that are gone (their files were
    /// no longer found by `seccs put DIR`; `seccs ls --all` marks them).
    #[arg(long)]
    gone: bool,
    /// Keep the newest N versions of each name and remove the older ones,
    /// rather than the names: of NAME, of every name under PREFIX/, or
    /// without either of every name in the store. Trees restored `--at` a
    /// time before the versions kept lose the removed ones.
    #[arg(
        long,
        value_name = "N",
        conflicts_with = "gone",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    keep: Option<u32>,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs ls`: list names.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only names starting with PREFIX, as a string: `docs/` lists what is
    /// under the directory docs, not docs' own record (as `ls DIR` in a
    /// shell does), and `docs` lists docs itself and docs-old too.
    #[arg(default_value = "", value_parser = name_arg())]
    prefix: String,
    /// Every version, not only the newest, and names that are gone (no
    /// longer found by `seccs put DIR` in their directory; marked "gone
    /// since").
    #[arg(long)]
    all: bool,
    /// One JSON object per line: name, version, size, reference, time, kind,
    /// mode, mtime, uid, gid, xattrs (names of extended attributes), stamp
    /// (settled: a put skips the file while it matches; recent: taken too
    /// close to a change, the next put reads it again), gone_since (null,
    /// or when the name was found gone). The name is given whole, as `get
    /// NAME@N` takes it: a directory's without the `/` the plain form
    /// shows it with (kind says it is one).
    #[arg(long)]
    pub(crate) json: bool,
    /// The names as they were at TIME (see `seccs get --at`): each one's
    /// newest version put by then, leaving out names not there then.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "all")]
    at: Option<u64>,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs verify`: check every node, record and count.
#[derive(Debug, Args)]
#[command(
    after_help = "Exits 0 when it finds nothing, 1 when it finds any problem or name that \
                  cannot be read back (after listing them), 2 when it cannot check the store \
                  (with --json, then {\"error\", \"exit\"} on standard output)."
)]
pub struct VerifyArgs {
    /// Print the report as one JSON object: {"nodes", "names" (how many
    /// were checked), "findings": [{"kind", ...}], "broken_names": [names
    /// that cannot be read back whole]}. A finding's "kind" is tampered,
    /// missing, unreadable, bad-record, orphan-page, newer-record,
    /// wrong-count, wrong-height or orphan; its other fields say which
    /// node or catalog key ("node", "key") and what was found.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs gc`: remove orphans and fix counts.
#[derive(Debug, Args)]
#[command(
    after_help = "The embedded backend keeps what `rm` deletes on disk until its tables \
are compacted; gc compacts them, so the space of removed contents returns to the file system. \
On PostgreSQL gc VACUUMs the store's table, so the rows removed become room the server reuses.\n\n\
gc never deletes a counted node it cannot read (a wrong chunk size makes sound nodes look \
tampered): it lists what it left as `left: …` lines and exits 1. `seccs rm NAME` removes a \
broken name.\n\n\
A catalog record that does not authenticate under the store's key (checked at open, so the \
record is corrupt or forged, and nothing can read it) is removed, one `removed bad-record: …` \
line each; so is a catalog entry the backend cannot decode at all (verify's `unreadable`, such as \
a Redis value too short for its count), one `removed unreadable: …` line each. The contents they \
held keep their counts, as puts without a name (`seccs rm REF` undoes them). A store made \
before check values whose key opens some records but not others keeps those (a `kept …` line): \
they may be another key's.\n\n\
A catalog record that authenticates but was written by a newer seccs (verify's \
`newer-record`) is not damage: while there is one, gc removes nothing and fixes no count (the \
nodes it references cannot be told by this build), and exits 1 saying so.\n\n\
Exits 0 when it leaves the store clean, 1 when its report (printed first) names what it left, \
catalog records it removed as damaged (the names they held are lost), or that it could not \
give the space back, 2 when it cannot run (with --json, then {\"error\", \"exit\"} on \
standard output)."
)]
pub struct GcArgs {
    /// Print the report as one JSON object: {"removed" (entries removed),
    /// "records_removed", "records_left", "unreadable_records_removed",
    /// "pages_removed", "newer_records" (catalog keys, in hex),
    /// "counts_fixed", "remaining" (findings left, as verify --json gives
    /// them), "broken_names", "space_not_reclaimed", "space_later" (null,
    /// or why the space of what was removed is not given back now)}.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `seccs stat`: what the backend holds.
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Print JSON: {"entries", "bytes", "nodes", "names", "by_kind": {"leaf",
    /// "compressed_leaf", "superchunk", "catalog_record", "catalog_page",
    /// "unrecognized", "damaged": {"entries", "bytes"}}, "chunk_size",
    /// "wrapper", "backend"}. Bytes count key, value and
    /// an 8-byte count per entry, before the backend's own overhead; a
    /// damaged entry (one the backend cannot decode) counts its key only.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub location: StoreLocation,
}

/// `--chunk-size`: refused by the parser (a usage error) outside what
/// some wrapper takes; within that, a size too small for the wrapper given
/// is refused by [`Params::new`], which knows both.
fn chunk_size_arg() -> clap::builder::RangedU64ValueParser<usize> {
    let smallest = WrapperKind::ALL
        .into_iter()
        .map(Params::min_chunk_size)
        .min()
        .unwrap_or(DEFAULT_CHUNK_SIZE);
    clap::builder::RangedU64ValueParser::new().range(smallest as u64..=MAX_CHUNK_SIZE as u64)
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (o, l) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not OFFSET:LEN"))?;
    let o = o.parse().map_err(|_| format!("{o:?} is not an offset"))?;
    let l = l.parse().map_err(|_| format!("{l:?} is not a length"))?;
    Ok((o, l))
}

/// Runs `seccs init`.
pub fn init(loc: &StoreLocation, args: InitArgs) -> Result<()> {
    let path = loc.path()?;
    let params = given_params(&args).or_defaults()?;
    // A path given is the current directory's, as --kms-ca and
    // --share-config are (recorded absolute); the default sits in DIR.
    let key_path = args
        .key_file
        .as_deref()
        .map(std::path::absolute)
        .transpose()?
        .unwrap_or_else(|| PathBuf::from("key"));
    let key_shown = if key_path.is_absolute() {
        key_path.clone()
    } else {
        path.join(&key_path)
    };
    // As the `seccs kms` commands read them: the one on the command line
    // wins over both variables.
    let (kms_ca, kms_pin) = match &args.key_from_kms {
        Some(_) => crate::kms::either_option(
            (
                args.kms_ca.clone().map(Into::into),
                args.kms_pin.clone().map(Into::into),
            ),
            ("SECCS_KMS_CA", "SECCS_KMS_PIN"),
        )?,
        None => (None, None),
    };
    let kms_pin = kms_pin
        .map(|p| crate::kms::utf8(p, "SECCS_KMS_PIN"))
        .transpose()?;
    // The URL is said wrong before the KEK file is looked at, as an open
    // of the store says it.
    if let Some(server) = &args.key_from_kms {
        crate::kms::check_server_url(server, "--key-from-kms")?;
    }
    if let Some(server) = &args.key_from_kms
        && server.starts_with("https://")
        && kms_ca.is_none()
        && kms_pin.is_none()
    {
        bail!(
            "--key-from-kms {server} needs --kms-ca FILE or --kms-pin SHA256 (or SECCS_KMS_CA \
             or SECCS_KMS_PIN) to trust the server (`seccs kms serve` prints both)"
        );
    }
    let salt = match (&args.key_from_kms, args.attach) {
        // Without --kms-salt, the descriptor's (see `attach`).
        (Some(_), true) => args.kms_salt.as_deref().map(kms_salt).transpose()?,
        (Some(_), false) => Some(new_salt()?),
        (None, _) => None,
    };
    let key = match (&args.key_from_share, &args.key_from_kms) {
        (_, Some(server)) => KeySource::Kms {
            server: server.clone(),
            kek_file: kek_file(args.kek.as_deref())?,
            ca: kms_ca
                .map(|ca| std::path::absolute(PathBuf::from(ca)))
                .transpose()?,
            pin: kms_pin,
            salt,
        },
        (Some(tag), None) => {
            let config = match &args.share_config {
                Some(c) => std::path::absolute(c)?,
                None => dirs::home_dir()
                    .context("no home directory; pass --share-config")?
                    .join(".seccs-share/seccs-share.toml"),
            };
            KeySource::Share {
                tag: tag.clone(),
                config,
            }
        }
        (None, None) => KeySource::File { path: key_path },
    };
    let shows_key_file = matches!(key, KeySource::File { .. });
    if args.attach {
        return attach(&path, &args, key, loc);
    }
    open::create(
        &path,
        NewStore {
            params,
            backend: args.backend.clone(),
            key,
            share_password_file: loc.share_password_file(),
            existing_key: None,
            lock_wait: loc.lock_wait,
        },
    )?;
    // The URL may hold a password: it is shown as config.toml keeps it.
    let shown_backend = seccs_backends::redact(&args.backend);
    if seccs_core::redact::url_password(&args.backend) != args.backend {
        let variable = match args.backend.split_once("://").map(|(s, _)| s) {
            Some("postgres" | "postgresql") => "PGPASSWORD",
            _ => "REDIS_PASSWORD",
        };
        errln!(
            "seccs: the password in the backend URL was used to make the store but is not kept \
             in its config.toml: give it to every later command as {variable} in the environment"
        );
    }
    if !shows_key_file {
        errln!(
            "seccs: created a store at {} (chunk size {}, wrapper {}, compression {}, backend {}); key held elsewhere ({})",
            path.display(),
            params.chunk_size(),
            params.wrapper(),
            params.compression(),
            shown_backend,
            if args.key_from_kms.is_some() {
                "key service"
            } else {
                "share network"
            }
        );
        return Ok(());
    }
    errln!(
        "seccs: created a store at {} (chunk size {}, wrapper {}, compression {}, backend {}); key file {}",
        path.display(),
        params.chunk_size(),
        params.wrapper(),
        params.compression(),
        shown_backend,
        key_shown.display()
    );
    Ok(())
}

/// Runs `seccs put`.
pub fn put(loc: &StoreLocation, args: PutArgs) -> Result<()> {
    // Checked before the store is opened (or made): a typo costs nothing.
    let mut patterns = args.exclude.clone();
    for file in &args.exclude_from {
        patterns.extend(crate::exclude::patterns_in(file)?);
    }
    let exclude = crate::exclude::Excludes::new(&patterns)?;
    let meta = if args.file.as_os_str() == "-" {
        None
    } else {
        Some(
            std::fs::symlink_metadata(&args.file)
                .with_context(|| format!("cannot read {}", shown_path(&args.file)))?,
        )
    };
    let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
    if meta.as_ref().is_some_and(|m| m.is_symlink()) && args.file.is_dir() {
        // Followed, it would be opened as a file and fail on the first
        // read; said before the store is opened (or made).
        bail!(
            "cannot store {0}: it is a symlink to a directory; put `{0}/` to store the tree \
             it points to",
            shown_path(&args.file)
        );
    }
    if meta.as_ref().is_some_and(|m| m.is_symlink())
        && let Err(e) = std::fs::metadata(&args.file)
        && e.kind() == io::ErrorKind::NotFound
    {
        // A file is read through its link, and a link whose target is gone
        // has nothing to read: "No such file" alone would seem to name the
        // link itself.
        let target = std::fs::read_link(&args.file)
            .map(|t| shown_path(&t))
            .unwrap_or_else(|_| "a target".to_owned());
        bail!(
            "cannot store {}: it is a symbolic link to {target}, which does not exist (a file \
             is read through its link; `seccs put DIR` stores the links under DIR as links)",
            shown_path(&args.file)
        );
    }
    let directory_only = [
        ("--exclude", !args.exclude.is_empty()),
        ("--exclude-from", !args.exclude_from.is_empty()),
        ("--force", args.force),
        ("--one-file-system", args.one_file_system),
        ("--dry-run", args.dry_run),
    ];
    if let Some((flag, _)) = directory_only.iter().find(|(_, given)| *given && !is_dir) {
        bail!(
            "{flag} applies to a directory; {} is not one",
            shown_path(&args.file)
        );
    }
    if let Some(name) = &args.name {
        if is_dir {
            bail!("--name applies to one file; a directory's files are named by their paths");
        }
        let source = meta
            .as_ref()
            .map_or("standard input".to_owned(), |_| shown_path(&args.file));
        seccs_store::check_name(name).with_context(|| format!("cannot store {source}"))?;
    }
    let opened = open::open(loc, !args.dry_run)?;
    let store = &opened.store;
    let Some(meta) = meta else {
        let mut stdin = io::stdin().lock();
        return put_one(
            store,
            &mut stdin,
            args.name.as_deref(),
            None,
            FileMeta::default(),
        )
        .map(drop);
    };
    if is_dir {
        return crate::tree::put_tree(
            store,
            &args.file,
            &crate::tree::TreePut {
                progress: progress::enabled(args.quiet),
                quiet: args.quiet,
                skip_unchanged: !args.force,
                exclude,
                dry_run: args.dry_run,
                one_file_system: args.one_file_system,
                store_dir: Some(opened.dir.path().to_path_buf()),
            },
        );
    }
    let start = crate::tree::since_epoch();
    let file = File::open(&args.file)
        .with_context(|| format!("cannot read {}", shown_path(&args.file)))?;
    // The stamp and bits of the file opened (through a link, the target's),
    // for a restore of the name.
    let crate::tree::Recorded {
        meta: recorded,
        report,
    } = crate::tree::opened_attrs(&file, &args.file, start)?;
    let stamp = recorded.stamp;
    let bar = progress::bytes(meta.len(), args.quiet);
    let mut reader = bar.wrap_read(&file);
    let stored = put_one(
        store,
        &mut reader,
        args.name.as_deref(),
        Some(&args.file),
        recorded,
    )?;
    bar.finish_and_clear();
    let reports: Vec<String> = report
        .into_iter()
        .chain(crate::tree::changed_while_read(
            &file,
            &args.file,
            stamp.as_ref(),
            stored.len(),
        ))
        .collect();
    if !reports.is_empty() {
        problems!("{}", reports.join("; "));
    }
    Ok(())
}

fn put_one(
    store: &seccs_store::Store,
    reader: &mut dyn Read,
    name: Option<&str>,
    path: Option<&Path>,
    meta: FileMeta,
) -> Result<ContentRef> {
    let source = || path.map_or("standard input".to_owned(), shown_path);
    match name {
        None => {
            let outcome = store
                .put_reader(reader)
                .with_context(|| format!("cannot store {}", source()))?;
            dataln!("{}", outcome.content_ref)?;
            Ok(outcome.content_ref)
        }
        Some(name) => {
            // A file under a directory's name (one put DIR stored, with
            // names under it) would not come back with them: a restore
            // cannot write both at one path. One lookup of the name; the
            // catalog is listed unless the name is a file already (its
            // new version changes nothing of that). Names can be under it
            // with no record of its own: put as `--name N/F`, or left when
            // `rm N@1` took the directory's only version.
            let is_file = store.lookup(name)?.is_some_and(|r| {
                !r.is_gone() && r.latest().is_some_and(|v| v.kind != EntryKind::Directory)
            });
            let under = match is_file {
                false => store.list_readable(&format!("{name}/"))?.records,
                true => Vec::new(),
            };
            if let Some(inside) = under.iter().find(|r| !r.is_gone()) {
                bail!(
                    "{} names a directory in the store ({} is under it): give the file \
                     another name, or `seccs rm {}/` first",
                    shown(name),
                    shown(&inside.name),
                    shown(name)
                );
            }
            refuse_under_a_file(store, name)?;
            let (outcome, version) = store
                .put_named_stamped(reader, name, EntryKind::File, meta)
                .with_context(|| format!("cannot store {}", source()))?;
            dataln!("{}", outcome.content_ref)?;
            errln!("seccs: stored as {}@{version}", shown(name));
            Ok(outcome.content_ref)
        }
    }
}

/// Refuses `name` when a name it would be under (`a` or `a/b` of
/// `a/b/c`) holds a file or a symlink: a restore cannot make a directory
/// where that file is. One lookup per level of the name.
fn refuse_under_a_file(store: &seccs_store::Store, name: &str) -> Result<()> {
    for (at, _) in name.match_indices('/') {
        let above = &name[..at];
        let kind = store
            .lookup(above)?
            .filter(|r| !r.is_gone())
            .and_then(|r| r.latest().map(|v| v.kind));
        if let Some(kind @ (EntryKind::File | EntryKind::Symlink)) = kind {
            bail!(
                "{} would be under {}, a {} in the store, not a directory: give the file \
                 another name, or `seccs rm {}` first",
                shown(name),
                shown(above),
                kind_word(kind),
                shown(above)
            );
        }
    }
    Ok(())
}

/// What the user typed, resolved: a reference, or NAME or NAME@N (then
/// the name and number it was read as, and the version it names).
type Resolved<'a> = (ContentRef, Option<(&'a str, Option<u32>, Version)>);

/// Resolves what the user typed: a reference, NAME or NAME@N, the catalog
/// read in one round trip.
fn resolve<'a>(store: &seccs_store::Store, spec: &'a str) -> Result<Resolved<'a>> {
    if let Ok(r) = spec.parse::<ContentRef>()
        && r.digest().len() == store.params().wrapper().digest_len()
    {
        return Ok((r, None));
    }
    let (name, number, version) = store.resolve_spec(spec)?;
    Ok((version.content_ref.clone(), Some((name, number, version))))
}

/// Runs `seccs get`.
pub fn get(loc: &StoreLocation, args: GetArgs) -> Result<()> {
    refuse_future("--at", args.at)?;
    let exclude = crate::exclude::Excludes::new(&args.exclude)?;
    let ownership = crate::tree::Ownership::for_this_process(!args.no_same_owner);
    let opened = open::open_to_read(loc)?;
    let store = &opened.store;
    let store_dir = match args.output.as_deref().filter(|p| *p != Path::new("-")) {
        Some(out) => refuse_the_stores_own_files(&opened.dir, out)?,
        None => None,
    };
    if args.reference.ends_with('/') {
        let Some(dir) = &args.output else {
            bail!("restoring {} needs -o DIR", shown(&args.reference));
        };
        refuse_for_a_tree(&args.reference, dir, args.range.is_some())?;
        // `/` and `./` name the top level, where `put .` and `put /` store.
        let prefix = match args.reference.as_str() {
            "/" | "./" => "",
            prefix => prefix,
        };
        return crate::tree::get_tree(
            store,
            prefix,
            dir,
            &crate::tree::TreeGet {
                at: args.at,
                exclude: &exclude,
                ownership,
                progress: progress::enabled(args.quiet),
                store_dir: store_dir.as_deref(),
            },
        );
    }
    if !exclude.is_empty() {
        bail!(
            "--exclude applies to a tree (PREFIX/ -o DIR); {} is one content",
            shown(&args.reference)
        );
    }
    let spec = accepted_spec(store, &args.reference)?;
    let (r, named) = match (&spec, args.at) {
        (Spec::Typed(spec), None) => resolve(store, spec)?,
        (Spec::Typed(spec), Some(t)) => {
            // `--at` takes the name whole.
            let version = version_at(store, spec, t)?;
            (
                version.content_ref.clone(),
                Some((spec.as_str(), None, version)),
            )
        }
        (Spec::DirectoryVersion { .. }, Some(_)) => {
            bail!("--at picks the version itself: give NAME, not NAME/@N")
        }
        (Spec::DirectoryVersion { name, number }, None) => {
            let version = directory_version(store, name, *number)?;
            (
                version.content_ref.clone(),
                Some((name.as_str(), Some(*number), version)),
            )
        }
    };
    let version = named.as_ref().map(|(_, _, v)| v);
    if let Some((name, number, v)) = named
        .as_ref()
        .filter(|(_, _, v)| v.kind == EntryKind::Directory)
    {
        // The prefix as a command line types it.
        let name = crate::tree::typed(&format!("{}/", shown(name)));
        // A tree is restored as it was at a time, not by a directory's
        // version: the files under it have versions of their own.
        match (number, args.at) {
            (_, Some(t)) => bail!(
                "{} is a directory: restore it with `seccs get {name} -o DIR --at '{}'`",
                shown(&args.reference),
                format_time(t)
            ),
            (Some(_), None) => bail!(
                "{} is a version of a directory, put at {}: a tree is restored as it was at a \
                 time, with `seccs get {name} -o DIR --at TIME` (`seccs ls --at TIME {name}` \
                 lists it)",
                shown(&args.reference),
                format_time(v.time)
            ),
            (None, None) => bail!(
                "{} is a directory: restore it with `seccs get {name} -o DIR`",
                shown(&args.reference)
            ),
        }
    }
    // A name's content whose root node is gone is damage to the store
    // (`read` says it so), not a reference mistyped; unless the version
    // (or a bare reference's content) was removed while it was read,
    // which `read` says as that.
    let damaged = |e: StoreError| match e {
        StoreError::Integrity(detail) if version.is_some() => StoreError::Integrity(format!(
            "{detail}; `seccs verify` lists what else is damaged"
        )),
        // A reference typed or copied wrong in its length (the last 16
        // digits) names a root that authenticates at another height or
        // length: the store tells it from damage (a root that
        // authenticates as nothing), and each is said as what it is.
        StoreError::InvalidRef(detail) if version.is_none() => StoreError::InvalidRef(format!(
            "{detail} (its last 16 hex digits are the content's length)"
        )),
        StoreError::Integrity(detail) if version.is_none() => StoreError::Integrity(format!(
            "{detail}: the store is damaged (`seccs verify` says what else)"
        )),
        other => other,
    };
    // A name's version is read as one, so that a node that a writer
    // removed under this reader is told from damage.
    let read = |offset: u64, len: u64, out: &mut dyn Write| match &named {
        Some((name, _, v)) => store.get_version_range(name, v, offset, len, out),
        None => store.get_range(&r, offset, len, out),
    };
    let to_file = args.output.as_deref().filter(|p| *p != Path::new("-"));
    if let (Some(v), Some(path)) = (&version, to_file)
        && v.kind == EntryKind::Symlink
    {
        if args.range.is_some() {
            bail!(
                "{} is a symlink: --range reads part of a file; without -o FILE it reads \
                 part of the link's target",
                shown(&args.reference)
            );
        }
        // A symlink comes back as a symlink, as a tree restore makes it.
        let mut target = Vec::new();
        read(0, r.len(), &mut target)
            .map_err(damaged)
            .with_context(|| format!("cannot read {}", shown(&args.reference)))?;
        let attrs = crate::tree::attrs_of(v, ownership);
        return crate::output::write_link_atomically(path, &target, &attrs);
    }
    // A whole named file comes back with its permission bits and time.
    let attrs = match (&version, args.range) {
        (Some(v), None) => crate::tree::attrs_of(v, ownership),
        _ => crate::output::FileAttrs::default(),
    };
    let (offset, len) = args.range.unwrap_or((0, r.len()));
    let bar = progress::bytes(len, args.quiet);
    // Standard output and a file are fed the same way, so that a read that
    // fails is said the same way into either ("cannot read NAME: ...").
    let fill = |out: &mut dyn Write, written: &str| {
        crate::output::read_into(out, written, &args.reference, |out| {
            read(offset, len, &mut bar.wrap_write(out)).map_err(damaged)
        })
    };
    // `-o -` is standard output, as `put -` is standard input.
    match to_file {
        None => {
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
            fill(&mut out, "standard output")?;
            out.flush().context("cannot write standard output")?;
        }
        // A symlink at FILE is replaced, not written through, as a tree
        // restore and tar replace one.
        Some(path) => crate::output::write_file_atomically_as(
            path,
            &attrs,
            crate::output::AtLink::Replace,
            |out| fill(out, &shown_path(path)),
        )?,
    }
    bar.finish_and_clear();
    Ok(())
}

/// Refuses an output of `get` (a FILE, or a DIR a tree is restored into)
/// in the store's own directory, or at its key file or KEK file kept
/// elsewhere: written there, the output would replace the key or the
/// database it is read from, and every content of the store would be lost
/// with them. The path is followed as far as it goes (links among its
/// directories, parts not made yet, and a symlink at FILE, which the write
/// would replace rather than follow: one into the store is refused all
/// the same, which loses nothing). Returns the
/// store's directory resolved (links followed), for the tree restore's
/// own check of each name; `None` when it cannot be resolved.
fn refuse_the_stores_own_files(
    dir: &seccs_store::dir::StoreDir,
    out: &Path,
) -> Result<Option<PathBuf>> {
    let Ok(store_dir) = std::fs::canonicalize(dir.path()) else {
        return Ok(None);
    };
    let target = real_location(out);
    if target.starts_with(&store_dir) {
        bail!(
            "cannot write {}: it is in the store's directory {}, which holds the store's own \
             files; give a path outside it",
            shown_path(out),
            shown_path(dir.path())
        );
    }
    let key_files = match &dir.config().key {
        KeySource::File { path } => vec![("key file", dir.resolve(path))],
        KeySource::Kms { kek_file, .. } => vec![("KEK file", dir.resolve(kek_file))],
        _ => Vec::new(),
    };
    for (what, file) in key_files {
        if std::fs::canonicalize(&file).is_ok_and(|f| f == target) {
            bail!(
                "cannot write {}: it is the store's {what} {}; give another path",
                shown_path(out),
                shown_path(&file)
            );
        }
    }
    Ok(Some(store_dir))
}

/// Where writing `path` lands: the path with its longest existing part
/// resolved (symlinks followed, `..` taken), the rest as given.
fn real_location(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    // Bounded by the path's components.
    loop {
        if let Ok(found) = std::fs::canonicalize(if at.as_os_str().is_empty() {
            Path::new(".")
        } else {
            at
        }) {
            return rest.iter().rev().fold(found, |p, part| p.join(part));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Refuses what `get PREFIX/ -o DIR` cannot do: --range (a tree is many
/// contents) and `-o -` (a tree cannot go to standard output).
fn refuse_for_a_tree(prefix: &str, dir: &Path, range: bool) -> Result<()> {
    if range {
        bail!(
            "--range applies to one content (a reference, NAME or NAME@N); {} is a tree",
            shown(prefix)
        );
    }
    if dir == Path::new("-") {
        bail!(
            "{} is a tree, restored into a directory: it cannot go to standard output \
             (give -o DIR; `-o ./-` for a directory named -)",
            shown(prefix)
        );
    }
    Ok(())
}

/// A name, reference or prefix as typed: its bytes, UTF-8 or not, read
/// as `put DIR` names a file (`$'caf\xe9'` reaches `caf\xe9`), or the
/// name as `--json` gives it.
pub(crate) fn name_arg() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::TypedValueParser;
    use std::os::unix::ffi::OsStrExt;
    clap::builder::OsStringValueParser::new()
        .map(|typed| seccs_store::file_name::name_of_typed(typed.as_bytes()))
}

/// A new name given with `--name`: its bytes, UTF-8 or not, refused when
/// it holds a character that stands for a byte (a restore would write the
/// byte instead).
fn new_name_arg() -> NewNameParser {
    NewNameParser
}

/// The parser of `--name`. Its own, rather than a mapped one, because
/// clap quotes a refused value as it was typed, and the characters refused
/// here are the ones a terminal does not show: the message shows the
/// value escaped.
#[derive(Debug, Clone, Copy)]
struct NewNameParser;

impl clap::builder::TypedValueParser for NewNameParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        use std::os::unix::ffi::OsStrExt;
        seccs_store::file_name::name_of_bytes(value.as_bytes()).ok_or_else(|| {
            let arg = arg.map_or_else(|| "--name".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value for '{arg}': {}: a name may not hold a character of \
                     U+EF80-U+EFFF, which stand for bytes of file names that are not UTF-8 (a \
                     restore would write those bytes)\n",
                    crate::tree::shown_literally(&value.to_string_lossy())
                ),
            )
            .with_cmd(cmd)
        })
    }
}

/// What the user typed, as it is read.
enum Spec {
    /// A reference, NAME or NAME@N, read as [`seccs_store::Store::read_spec`]
    /// reads it.
    Typed(String),
    /// A directory's version as `seccs ls --all` shows it (`NAME/@N`):
    /// version N of the directory NAME and nothing else. Turned into
    /// `NAME@N`, it would read (or remove) a file spelled so, not the
    /// directory's version.
    DirectoryVersion { name: String, number: u32 },
}

/// What the user typed: `NAME/@N` is version N of the directory NAME,
/// unless a name is spelled that way itself (a file `@N` in the directory
/// NAME), and refused when it is both.
fn accepted_spec(store: &seccs_store::Store, spec: &str) -> Result<Spec> {
    if let Some((name, number)) = spec.rsplit_once("/@")
        && !name.is_empty()
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
        && let Ok(number) = number.parse::<u32>()
    {
        if store.lookup(spec)?.is_none() {
            return Ok(Spec::DirectoryVersion {
                name: name.to_owned(),
                number,
            });
        }
        // A file named `@N` in the directory NAME is spelled the same: when
        // NAME has a version N too, neither reading is taken.
        if store
            .lookup(name)?
            .is_some_and(|r| r.version(number).is_some())
        {
            bail!(
                "{} is both a name and version {number} of {}: {}@N reads a version of the \
                 first, {}@{number} the second",
                shown(spec),
                shown(name),
                shown(spec),
                shown(name)
            );
        }
    }
    Ok(Spec::Typed(spec.to_owned()))
}

/// Version `number` of the directory `name`, as `NAME/@N` names it: a
/// version of `name` that is not a directory is refused, so that the
/// spelling of a directory's version never reaches a file's.
fn directory_version(store: &seccs_store::Store, name: &str, number: u32) -> Result<Version> {
    let version = store.resolve_named(name, Some(number))?;
    if version.kind != EntryKind::Directory {
        bail!(
            "{}/@{number} names a version of a directory, and version {number} of {} is not \
             a directory (`seccs ls --all {}` lists its versions)",
            shown(name),
            shown(name),
            crate::tree::typed(&shown(name))
        );
    }
    Ok(version)
}

/// A name or reference as messages show it (control characters escaped).
fn shown(name: &str) -> String {
    crate::tree::shown_name(name, EntryKind::File)
}

/// A path as messages show it (control characters escaped).
fn shown_path(path: &Path) -> String {
    crate::tree::shown_path(path)
}

/// The version NAME held at `time`.
fn version_at(store: &seccs_store::Store, name: &str, time: u64) -> Result<Version> {
    if let Ok(r) = name.parse::<ContentRef>()
        && r.digest().len() == store.params().wrapper().digest_len()
    {
        bail!("--at applies to a NAME or PREFIX/: a reference names one content already");
    }
    let record = whole_name(
        store,
        name,
        "--at picks the version itself: give NAME, not NAME@N",
    )?;
    record.at(time).cloned().with_context(|| {
        format!(
            "{} held nothing at {} (not put yet, gone then, or that version removed): \
             `seccs ls --all {}` lists its versions",
            shown(name),
            format_time(time),
            crate::tree::typed(&shown(name))
        )
    })
}

/// Refuses a time given to `option` (`--at`, `diff --from`, `diff --to`)
/// after now: what a name held then is not known yet, and the listing of
/// now would pass for it.
pub(crate) fn refuse_future(option: &str, at: Option<u64>) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match at {
        Some(at) if at > now => bail!(
            "{option} {} is in the future (now is {} by this machine's clock; a version put on a \
             machine whose clock is ahead of this one's is stamped later than now: give now, or \
             leave {option} out for what the names hold now)",
            format_time(at),
            format_time(now)
        ),
        _ => Ok(()),
    }
}

/// The record of `name`, given to an option that works on a whole name:
/// NAME@N (unless it is a name itself) fails with `refusal`.
fn whole_name(store: &seccs_store::Store, name: &str, refusal: &str) -> Result<Record> {
    match store.lookup(name)? {
        Some(record) => Ok(record),
        None if parse_name_version(name).1.is_some() => bail!("{refusal}"),
        None => bail!("no content named {name:?}"),
    }
}

/// Parses `--at`: seconds since the epoch, or a UTC time (RFC 3339, with
/// a space or `T`, as `seccs ls` prints it).
pub(crate) fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(secs);
    }
    let ts: jiff::Timestamp = s.trim().parse().map_err(|e| {
        format!(
            "{s:?}: give a UTC time as `seccs ls` prints it (2026-12-02 14:14:22Z) \
             or seconds since the epoch ({e})"
        )
    })?;
    u64::try_from(ts.as_second()).map_err(|_| format!("{s:?} is before 1970"))
}

/// Runs `seccs rm`.
pub fn rm(loc: &StoreLocation, args: RmArgs) -> Result<()> {
    let opened = open::open(loc, false)?;
    let store = &opened.store;
    if args.gone {
        let prefix = args.reference.as_deref().unwrap_or("");
        return remove_listed(store, prefix, true);
    }
    if let Some(keep) = args.keep {
        return keep_newest(store, args.reference.as_deref().unwrap_or(""), keep);
    }
    let Some(reference) = args.reference else {
        bail!("rm needs a reference, a NAME, NAME@N or PREFIX/ (or --gone)");
    };
    if reference.ends_with('/') && store.lookup(&reference)?.is_none() {
        return remove_listed(store, &reference, false);
    }
    if let Ok(r) = reference.parse::<ContentRef>()
        && r.digest().len() == store.params().wrapper().digest_len()
    {
        let report = store.delete(&r).map_err(|e| match e {
            e @ StoreError::NotFound(_) => anyhow::Error::new(e),
            e => anyhow::Error::new(e).context(format!("cannot remove the put {r}")),
        })?;
        errln!(
            "seccs: removed one put of {r} ({} {} freed)",
            report.removed,
            crate::tree::entries(report.removed)
        );
        said_of_delete(&report);
        return Ok(());
    }
    // A name spelled NAME@N itself (`build@2`) is that name, whole, and
    // one that is also another name's version is refused.
    let spec = accepted_spec(store, &reference)?;
    let (name, version) = match &spec {
        Spec::Typed(spec) => store.read_spec(spec)?,
        Spec::DirectoryVersion { name, number } => {
            directory_version(store, name, *number)?;
            (name.as_str(), Some(*number))
        }
    };
    // A directory's name alone would take its own record and leave every
    // name under it: the tree is removed by its prefix.
    if version.is_none()
        && store
            .lookup(name)?
            .and_then(|record| record.latest().map(|v| v.kind))
            == Some(EntryKind::Directory)
    {
        bail!(
            "{} is a directory: `seccs rm {}` removes it and every name under it \
             (`seccs rm {}` one version of the directory's own record)",
            shown(name),
            crate::tree::typed(&format!("{}/", shown(name))),
            crate::tree::typed(&format!("{}/@N", shown(name)))
        );
    }
    // What is missing is said once, whole; a failure on the way names
    // what was being removed.
    let removed = store.remove_name(name, version).map_err(|e| match e {
        e @ StoreError::NotFound(_) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!(
            "cannot remove {}{}",
            shown(name),
            version.map(|n| format!("@{n}")).unwrap_or_default()
        )),
    })?;
    // The numbers of a name whose last version went start again at 1: a
    // NAME@N noted before may later name other content.
    let left = if store.lookup(name)?.is_some() {
        String::new()
    } else {
        format!(
            "; no version of it is left, so a later put of {} is version 1",
            shown(name)
        )
    };
    errln!(
        "seccs: removed {removed} version(s) of {}{left}",
        shown(name)
    );
    Ok(())
}

/// Says on standard error what damage `rm REF` went past; the put is
/// undone either way, so the exit code stays 0.
fn said_of_delete(report: &seccs_store::DeleteReport) {
    for node in &report.missing {
        errln!("seccs: node {node} of the content was missing: nothing of it to release");
    }
    for node in &report.unreadable {
        errln!("seccs: node {node} of the content did not authenticate: removed");
    }
    for node in &report.damaged {
        // The content's own nodes: one elsewhere that the pass over the
        // store's superchunks could not read stops the delete before it.
        errln!("seccs: entry {node} cannot be decoded by the backend: left as it is");
    }
    if !(report.missing.is_empty() && report.unreadable.is_empty() && report.damaged.is_empty()) {
        errln!(
            "seccs: the nodes only those listed cannot be told, so they keep their counts \
             (space leaked, nothing another content needs removed); `seccs verify` checks the rest"
        );
    }
    if report.damaged_records > 0 {
        errln!(
            "seccs: {} catalog record(s) could not be read and were not taken to hold this \
             content (`seccs verify` lists them, `seccs gc` removes those that do not \
             authenticate)",
            report.damaged_records
        );
    }
}

/// Removes every name under `prefix` (only the gone ones with `only_gone`),
/// and, for a whole tree, the directory `prefix` names itself, if one was put.
fn remove_listed(store: &seccs_store::Store, prefix: &str, only_gone: bool) -> Result<()> {
    let listing = store.list_readable(prefix)?;
    // A prefix without its `/` (`rm --gone photos`) is the directory of
    // that name, not every name that starts so (`photos-2019/`).
    let under = |name: &str| {
        prefix.is_empty() || prefix.ends_with('/') || crate::tree::within(name, prefix)
    };
    let mut names: Vec<String> = listing
        .records
        .iter()
        .filter(|r| (!only_gone || r.is_gone()) && under(&r.name))
        .map(|r| r.name.clone())
        .collect();
    if !only_gone && let Some(dir) = crate::tree::directory_named_by(store, prefix)? {
        names.push(dir.name);
    }
    let what = if only_gone { "gone names" } else { "names" };
    let place = if prefix.is_empty() {
        "in the store".to_owned()
    } else {
        format!("under {prefix:?}")
    };
    if names.is_empty() {
        // Nothing readable to remove: the damage is the report, as `ls`
        // says it.
        damage_reported(&listing)?;
        // Nothing gone under names that are there is a clean state, not
        // an error; a prefix that names nothing is a mistake.
        let any_there = listing.records.iter().any(|r| under(&r.name));
        if only_gone && (any_there || prefix.is_empty()) {
            errln!("seccs: no {what} {place}");
            return Ok(());
        }
        bail!("no names start with {prefix:?}");
    }
    let (n, versions) = store.remove_names(&names)?;
    errln!("seccs: removed {n} {what} {place} ({versions} version(s))");
    damage_reported(&listing)
}

/// For a command that did its work on every record it could read: the
/// listing's damaged records (or records of a newer seccs) as its report
/// of problems (exit 1), else nothing.
pub(crate) fn damage_reported(listing: &seccs_store::Listing) -> Result<()> {
    match listing.damage() {
        Some(e) => problems!("{:#}", anyhow::Error::from(e)),
        None => Ok(()),
    }
}

/// `seccs rm --keep N [NAME | PREFIX/]`: trims each name to its newest N
/// versions.
fn keep_newest(store: &seccs_store::Store, reference: &str, keep: u32) -> Result<()> {
    let names: Vec<String> = if reference.is_empty() || reference.ends_with('/') {
        let listing = store.list_readable(reference)?;
        if let Some(e) = listing.damage() {
            return Err(e.into());
        }
        if listing.records.is_empty() && !reference.is_empty() {
            bail!("no names start with {reference:?}");
        }
        listing.records.into_iter().map(|r| r.name).collect()
    } else {
        vec![
            whole_name(
                store,
                reference,
                "--keep applies to NAME or PREFIX/, not to one version NAME@N",
            )?
            .name,
        ]
    };
    let (trimmed, removed) = store.keep_newest(&names, keep as usize)?;
    errln!(
        "seccs: kept the newest {keep} version(s) of {} name(s); removed {removed} older \
         version(s) of {trimmed} of them",
        names.len()
    );
    Ok(())
}

/// Runs `seccs ls`.
pub fn ls(loc: &StoreLocation, args: LsArgs) -> Result<()> {
    refuse_future("--at", args.at)?;
    let opened = open::open_to_read(loc)?;
    let listing = opened.store.list_readable(&args.prefix)?;
    let records = &listing.records;
    let mut out = BufWriter::new(crate::output::report_out());
    let mut listed = 0usize;
    for record in records {
        let versions: Vec<_> = if args.all {
            record.versions.iter().collect()
        } else if let Some(t) = args.at {
            record.at(t).into_iter().collect()
        } else if record.is_gone() {
            Vec::new()
        } else {
            record.latest().into_iter().collect()
        };
        for v in versions {
            listed += 1;
            let kind = kind_word(v.kind);
            if args.json {
                let line = serde_json::json!({
                    "name": record.name,
                    "version": v.number,
                    "size": v.content_ref.len(),
                    "reference": v.content_ref.to_hex(),
                    "time": v.time,
                    "kind": kind,
                    "mode": v.mode.map(|m| format!("{:04o}", m.bits())),
                    "uid": v.owner.map(|o| o.uid),
                    "gid": v.owner.map(|o| o.gid),
                    "xattrs": v
                        .xattrs
                        .iter()
                        .map(|x| String::from_utf8_lossy(x.name()))
                        .collect::<Vec<_>>(),
                    "mtime": v.stamp.map(|s| s.file_stamp().mtime_s),
                    // Whether a put may skip the file on its stamp.
                    "stamp": v.stamp.map(|s| match s {
                        Stamp::Settled(_) => "settled",
                        Stamp::Recent(_) => "recent",
                    }),
                    "gone_since": record.gone_since,
                });
                writeln!(out, "{line}")?;
            } else {
                let shown = crate::tree::shown_name(&record.name, v.kind);
                let name = match (args.all, record.gone_since) {
                    (true, Some(t)) => {
                        format!("{shown}@{}  (gone since {})", v.number, format_time(t))
                    }
                    (true, None) => format!("{shown}@{}", v.number),
                    (false, _) => shown,
                };
                writeln!(
                    out,
                    "{:>12}  {}  {}  {}",
                    v.content_ref.len(),
                    format_time(v.time),
                    v.content_ref,
                    name
                )?;
            }
        }
    }
    out.flush()?;
    // The rest is listed: damage is a report.
    damage_reported(&listing)?;
    if listed == 0 && !args.json {
        // Said apart from the listing, so that a script reads nothing.
        let mut when = args
            .at
            .map(|t| format!(" at {}", format_time(t)))
            .unwrap_or_default();
        // Names there are, all put later: when, so that a time that is
        // early by a clock's skew (a put on a machine whose clock is
        // ahead) shows as such.
        let first = listing
            .records
            .iter()
            .flat_map(|r| r.versions.iter().map(|v| v.time))
            .min();
        if let (Some(at), Some(first)) = (args.at, first)
            && at < first
        {
            when += &format!(
                " (the first version here was put at {})",
                format_time(first)
            );
        }
        match args.prefix.as_str() {
            "" => errln!("seccs: no names in the store{when}"),
            prefix => errln!("seccs: no names start with {prefix:?}{when}"),
        }
    }
    Ok(())
}

/// A version's kind as `--json` gives it.
pub(crate) fn kind_word(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Symlink => "symlink",
        EntryKind::Directory => "directory",
    }
}

/// A time in seconds since the Unix epoch as listings show it, in UTC.
pub(crate) fn format_time(secs: u64) -> String {
    match i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
    {
        Some(at) => at.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
        // Past the year 9999: no file system here stamps such a time, but
        // a stamp is what the file said, and is shown as it is.
        None => format!("{secs} s after 1970-01-01"),
    }
}

/// Runs `seccs verify`; exits non-zero on any finding.
pub fn verify(loc: &StoreLocation, args: VerifyArgs) -> Result<()> {
    let mut opened = open::open(loc, false)?;
    let nested = open::nested_stores_said(&opened).unwrap_or_default();
    // With a recorded check, another wrapper was refused at open.
    let params_checked = opened.dir.config().params_check.is_some();
    let spinner = progress::spinner("verifying", false);
    let report = opened.store.verify()?;
    if report.is_clean() && report.nodes > 0 {
        // Every node read with config.toml's chunk size and wrapper: a
        // store made before they were checked at open gets their check.
        opened.dir.confirm_params()?;
    }
    spinner.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else {
        outln!(
            "checked {} nodes and {} names: {} finding(s)",
            report.nodes,
            report.names,
            report.findings.len()
        )?;
        print_findings("", &report.findings, &report.broken_names)?;
    }
    if !report.is_clean() {
        // Damage reaches some names; a store read with another wrapper
        // than its own fails every name, and only by authentication (only
        // a store without a parameter check can be opened so).
        let only_tampered = report
            .findings
            .iter()
            .all(|f| matches!(f, seccs_store::Finding::Tampered { .. }));
        let hint = if !params_checked
            && only_tampered
            && report.names > 0
            && report.broken_names.len() as u64 == report.names
        {
            "; no name reads back, each for a node that does not authenticate: is \
             config.toml's wrapper the one the store was made with?"
        } else {
            ""
        };
        problems!(
            "verify found {}{hint}{nested}",
            problems_said(&report.findings, &report.broken_names)
        );
    }
    Ok(())
}

/// verify's and gc's findings, one line each, then the names they break.
fn print_findings(
    lead: &str,
    findings: &[seccs_store::Finding],
    broken_names: &[String],
) -> Result<()> {
    for f in findings {
        outln!("{lead}{f}")?;
    }
    for name in broken_names {
        outln!(
            "broken name: {}",
            crate::tree::shown_name(name, EntryKind::File)
        )?;
    }
    // Each line says what gc does of its kind; none of it happens while a
    // record a newer seccs wrote is there, and an orphan may be its.
    let newer = findings
        .iter()
        .any(|f| matches!(f, seccs_store::Finding::NewerRecord { .. }));
    let repairable = findings.iter().any(|f| {
        matches!(
            f,
            seccs_store::Finding::BadRecord { .. } | seccs_store::Finding::Orphan { .. }
        )
    });
    if newer && repairable {
        outln!(
            "note: while a catalog record a newer seccs wrote is in the store, gc removes no \
             orphan or bad record (an orphan may be that record's): run gc with a newer seccs"
        )?;
    }
    Ok(())
}

/// "N problem(s); …" for verify's and gc's final error.
fn problems_said(findings: &[seccs_store::Finding], broken_names: &[String]) -> String {
    let bad_records = findings
        .iter()
        .filter(|f| {
            matches!(
                f,
                seccs_store::Finding::BadRecord {
                    bad_pages: false,
                    ..
                }
            )
        })
        .count();
    let mut said = format!("{} problem(s)", findings.len());
    if !broken_names.is_empty() {
        said += &format!("; {} name(s) cannot be read back", broken_names.len());
    }
    if bad_records > 0 {
        said += &format!(
            "; {bad_records} catalog record(s) do not authenticate, so the names they \
             held cannot be told or read"
        );
    }
    let newer = findings
        .iter()
        .filter(|f| matches!(f, seccs_store::Finding::NewerRecord { .. }))
        .count();
    if newer > 0 {
        said += &format!(
            "; {newer} catalog record(s) were written by a newer seccs, so this build cannot \
             fully check the store (not damage: use a newer seccs)"
        );
    }
    said
}

/// Runs `seccs gc`.
pub fn gc(loc: &StoreLocation, args: GcArgs) -> Result<()> {
    let opened = open::open(loc, false)?;
    let nested = open::nested_stores_said(&opened).unwrap_or_default();
    let spinner = progress::spinner("collecting garbage", false);
    let report = opened.store.gc()?;
    spinner.finish_and_clear();
    if args.json {
        outln!("{}", serde_json::to_string(&report)?)?;
    } else if !report.newer_records.is_empty() {
        outln!(
            "removed nothing and fixed no count: a newer seccs wrote part of this store \
             ({} catalog record(s) this build cannot read, which may reference any node)",
            report.newer_records.len()
        )?;
        print_findings("left: ", &report.remaining, &report.broken_names)?;
    } else {
        // Records removed are counted apart from entries, as the report
        // keeps them.
        let records = report.records_removed.len()
            + report.unreadable_records_removed.len()
            + report.pages_removed.len();
        let records = match records {
            0 => String::new(),
            n => format!(" and {n} catalog record(s)"),
        };
        outln!(
            "removed {} entries{records}, fixed {} counts",
            report.removed,
            report.counts_fixed
        )?;
        for key in &report.records_removed {
            outln!(
                "removed bad-record: catalog record {key}, which (or a page of which) does not \
                 authenticate under the store's key or is missing (the contents it held keep \
                 their counts, as puts without a name)"
            )?;
        }
        for key in &report.unreadable_records_removed {
            outln!(
                "removed unreadable: catalog entry {key}, which the backend cannot decode (the \
                 contents it held keep their counts, as puts without a name)"
            )?;
        }
        for key in &report.pages_removed {
            outln!(
                "removed orphan-page: catalog page {key}, which no name's record lists (the \
                 contents it held keep their counts, as puts without a name)"
            )?;
        }
        if !report.records_left.is_empty() {
            outln!(
                "kept {} catalog record(s) that do not authenticate under this key (their \
                 bad-record lines below): the store records no check value of its key, and the \
                 key opens some records but not these, so they may be another key's rather than \
                 damage; gc removes such records only under a key proven to be the store's",
                report.records_left.len()
            )?;
        }
        print_findings("left: ", &report.remaining, &report.broken_names)?;
    }
    if let Some(note) = &report.space_later {
        eprintln!("seccs: note: {note}");
    }
    // What follows is in the report printed above: problems, not a gc
    // that could not run.
    if !report.newer_records.is_empty() {
        problems!(
            "gc changed nothing: a newer seccs wrote part of this store, and this build cannot \
             tell what its records reference; run gc with a newer seccs"
        );
    }
    // Each is a problem of its own, said in one line.
    let mut said = Vec::new();
    if !report.remaining.is_empty() || !report.broken_names.is_empty() {
        let mut left = format!(
            "gc left {} it does not repair, since it never deletes a node it cannot read",
            problems_said(&report.remaining, &report.broken_names)
        );
        if !report.broken_names.is_empty() {
            left += "; `seccs rm NAME` removes a broken name and frees what only it used";
        }
        said.push(left);
    }
    // The store is clean after it, but names were lost: a cron job that
    // runs only gc must hear of it.
    let lost = report.records_removed.len() + report.unreadable_records_removed.len();
    if lost > 0 {
        said.push(format!(
            "gc removed {lost} damaged catalog record(s) (listed above): the names and versions \
             they held can no longer be read here (their contents stay, as puts without a \
             name); a mirror of this store may still hold them"
        ));
    }
    if let Some(e) = &report.space_not_reclaimed {
        said.push(format!(
            "the changes above are made, but reclaiming the space of removed entries failed: {e}"
        ));
    }
    if !said.is_empty() {
        problems!("{}{nested}", said.join("; "));
    }
    Ok(())
}

/// Runs `seccs stat`.
pub fn stat(loc: &StoreLocation, args: StatArgs) -> Result<()> {
    let opened = open::open_to_read(loc)?;
    let stats = opened.store.stats()?;
    let usage = stats.usage;
    let config = opened.dir.config();
    let kinds = [
        ("leaf", stats.leaves),
        ("compressed_leaf", stats.compressed_leaves),
        ("superchunk", stats.superchunks),
        ("catalog_record", stats.records),
        ("catalog_page", stats.pages),
        ("unrecognized", stats.unrecognized),
        ("damaged", stats.damaged),
    ];
    if args.json {
        let by_kind: serde_json::Map<String, serde_json::Value> = kinds
            .iter()
            .map(|(name, u)| {
                let v = serde_json::json!({ "entries": u.entries, "bytes": u.bytes });
                ((*name).to_owned(), v)
            })
            .collect();
        let v = serde_json::json!({
            "entries": usage.entries,
            "bytes": usage.bytes,
            "nodes": stats.nodes(),
            "names": stats.names(),
            "by_kind": by_kind,
            "chunk_size": config.chunk_size,
            "wrapper": config.wrapper,
            "backend": config.backend,
        });
        outln!("{v}")?;
    } else {
        outln!("store      {}", opened.dir.path().display())?;
        outln!("backend    {}", config.backend)?;
        outln!("wrapper    {}", config.wrapper)?;
        outln!("chunk size {}", config.chunk_size)?;
        outln!("entries    {}", usage.entries)?;
        outln!("nodes      {}", stats.nodes())?;
        outln!("names      {}", stats.names())?;
        outln!("bytes      {}", usage.bytes)?;
        for (name, u) in kinds.iter().filter(|(_, u)| u.entries > 0) {
            outln!(
                "  {:<16} {:>10} entries {:>14} bytes",
                name.replace('_', " "),
                u.entries,
                u.bytes
            )?;
        }
    }
    Ok(())
}

/// A new store's salt for a key from the key service (16 random bytes, hex):
/// each store made with one KEK gets a key of its own.
/// `--kms-salt HEX`, required with --attach and --key-from-kms: 16 bytes,
/// in lowercase hex as config.toml keeps it.
fn kms_salt(given: &str) -> Result<String> {
    match seccs_core::hexenc::decode(&given.to_ascii_lowercase()) {
        Ok(salt) if salt.len() == 16 => Ok(seccs_core::hexenc::encode(&salt)),
        _ => bail!(
            "--kms-salt {given:?} is not 32 hex digits (16 bytes), as `salt` under [key] in a \
             store's config.toml holds it"
        ),
    }
}

/// The parameters `init` was given, each only where it was.
fn given_params(args: &InitArgs) -> crate::attach::GivenParams {
    crate::attach::GivenParams {
        chunk_size: args.chunk_size,
        wrapper: args.wrapper,
        compression: args.compression,
    }
}

/// Runs `seccs init --attach`.
fn attach(path: &Path, args: &InitArgs, key: KeySource, loc: &StoreLocation) -> Result<()> {
    let given = given_params(args);
    let key_shown = match &key {
        KeySource::File { path: key_path } if key_path.is_absolute() => {
            format!("key file {}", key_path.display())
        }
        KeySource::File { path: key_path } => format!("key file {}", path.join(key_path).display()),
        KeySource::Kms { .. } => "key from the key service".to_owned(),
        KeySource::Share { .. } => "key from the share network".to_owned(),
    };
    let attached = crate::attach::attach(
        path,
        crate::attach::Attach {
            given,
            backend: args.backend.clone(),
            key,
            share_password_file: loc.share_password_file(),
        },
    )?;
    let params = attached.params;
    let shown = seccs_backends::redact(&args.backend);
    if let Some(note) = &attached.descriptor_note {
        errln!("seccs: note: {note}");
    }
    if attached.from_descriptor {
        errln!(
            "seccs: attached the store on backend {shown} at {} ({key_shown}), with chunk size {}, \
             wrapper {} and compression {} as its backend's descriptor records them",
            path.display(),
            params.chunk_size(),
            params.wrapper(),
            params.compression()
        );
        return Ok(());
    }
    let why = match attached.descriptor_note {
        Some(_) => "the backend's descriptor of them was not used (see the note above)",
        None => "the backend keeps no descriptor of them",
    };
    errln!(
        "seccs: attached the store on backend {shown} at {} ({key_shown}). Its chunk size {}, \
         wrapper {} and compression {} are as given (or the defaults), since {why}: run `seccs \
         verify` now, which reads every node with them and, when clean, records them as the \
         store's (a wrong wrapper makes every node fail to authenticate; a wrong chunk size may \
         go unseen, so give the store's own)",
        path.display(),
        params.chunk_size(),
        params.wrapper(),
        params.compression()
    );
    Ok(())
}

fn new_salt() -> Result<String> {
    let mut salt = [0u8; 16];
    seccs_core::random_bytes(&mut salt)?;
    Ok(seccs_core::hexenc::encode(&salt))
}

/// The KEK file for `init --key-from-kms`, absolute: it must be a regular
/// file, since every open reads it again (`<(cat kek)` names a pipe that
/// is gone once init ends).
fn kek_file(kek: Option<&Path>) -> Result<PathBuf> {
    let kek = kek.context("--key-from-kms needs --kek FILE")?;
    let meta = std::fs::metadata(kek)
        .with_context(|| format!("cannot read the KEK file {}", kek.display()))?;
    if !meta.is_file() {
        bail!(
            "the KEK file {} is not a regular file: every open of the store reads it again, so \
             it must be a file that stays",
            kek.display()
        );
    }
    Ok(std::path::absolute(kek)?)
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn times_are_shown_in_utc_to_the_second() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(951_825_599), "2000-02-29 11:59:59Z");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(253_402_128_000), "9999-12-30 00:00:00Z");
        assert_eq!(
            format_time(u64::MAX),
            "18446744073709551615 s after 1970-01-01"
        );
    }
}
