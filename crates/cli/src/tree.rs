//! `seccs put DIR` and `seccs get PREFIX/ -o DIR`: directory trees as names.
//!
//! Names are paths as given on the command line, normalized like tar
//! (no leading `/`, `./` or `../`), with `/` separators. Regular files,
//! symlinks, DIR itself and the directories below it are stored (a
//! directory as an empty content, so that empty ones come back); other
//! special files are reported and skipped. A file that cannot be read is
//! reported, the rest is stored, and the command exits non-zero. Files,
//! directories and links keep their permission bits, modification times,
//! owners and extended attributes (`crate::xattr`) for the restore; a
//! restore not run as root gives back what an unprivileged owner may set
//! and says what it could not. `--one-file-system` does not enter mount
//! points; `--exclude` leaves names out of a put or a restore.
//!
//! A name under DIR that the catalog holds but the walk no longer finds is
//! marked gone (its versions stay; see `seccs_store::catalog`), so that
//! `seccs get DIR/` restores DIR as it was last put. Names under a directory
//! that could not be listed are left alone: their files may still be there.
//!
//! A file whose size, modification and change times and inode equal the
//! stamp recorded with its name's newest version is not read again (as
//! restic, borg and git skip unchanged files); its device and link count,
//! recorded for a restore to give back its hard links, take no part (see
//! `seccs_store::catalog::HardLinks`). A stamp is recorded only
//! when the file's change time lies clearly before the put began, so a
//! write that lands in the same timestamp tick as an earlier one, after the
//! file was read, still changes the change time past the recorded one.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use seccs_store::catalog::{
    EntryKind, FileMeta, FileMode, FileStamp, HardLinks, Owner, Record, Stamp, Version,
};
use seccs_store::{Store, file_name};

use crate::exclude::Excludes;
use crate::output::{Durability, FileAttrs};

/// What `stat` says of an entry: of an open file (`fstat`) or of a name
/// in a directory held open (`fstatat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl From<&Metadata> for Seen {
    fn from(m: &Metadata) -> Self {
        Seen {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec(),
        }
    }
}

impl From<&rustix::fs::Stat> for Seen {
    // The field types differ between architectures, as in std's
    // `MetadataExt`, which casts them the same way.
    #[allow(clippy::unnecessary_cast)]
    fn from(st: &rustix::fs::Stat) -> Self {
        Seen {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            mode: st.st_mode as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            nlink: st.st_nlink as u64,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as i64,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as i64,
        }
    }
}

impl Seen {
    fn file_type(&self) -> rustix::fs::FileType {
        rustix::fs::FileType::from_raw_mode(self.mode as rustix::fs::RawMode)
    }

    fn is_file(&self) -> bool {
        self.file_type() == rustix::fs::FileType::RegularFile
    }

    fn is_dir(&self) -> bool {
        self.file_type() == rustix::fs::FileType::Directory
    }

    fn is_symlink(&self) -> bool {
        self.file_type() == rustix::fs::FileType::Symlink
    }

    /// Device and inode: which file it is.
    fn identity(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }
}

/// One thing found under the directory.
enum Found {
    /// A regular file: read later, from its path `rel` under the directory
    /// put, and only if what is opened there is still the file the walk
    /// saw (`seen`).
    File {
        path: PathBuf,
        rel: PathBuf,
        name: String,
        seen: Seen,
    },
    /// A symlink, with the target the walk read.
    Symlink {
        path: PathBuf,
        name: String,
        seen: Seen,
        target: Vec<u8>,
        xattrs: std::io::Result<Vec<seccs_store::catalog::Xattr>>,
    },
    /// A directory: the one given (unless it is `.` or `/`) or one below it.
    Dir {
        path: PathBuf,
        name: String,
        seen: Seen,
        xattrs: std::io::Result<Vec<seccs_store::catalog::Xattr>>,
    },
}

impl Found {
    /// The name, the kind it is put as, its length (a link's is its
    /// target's, a directory's 0) and its stamp from the walk.
    fn identity(&self) -> (&str, EntryKind, u64, FileStamp) {
        match self {
            Found::File { name, seen, .. } => (name, EntryKind::File, seen.size, stamp_of(seen)),
            Found::Symlink { name, seen, .. } => {
                (name, EntryKind::Symlink, seen.size, stamp_of(seen))
            }
            Found::Dir { name, seen, .. } => (name, EntryKind::Directory, 0, stamp_of(seen)),
        }
    }
}

/// A name as put and ls show it: a directory as NAME/, so that it reads as
/// one, and what a terminal would not show as itself escaped the way the
/// shell's `$'…'` quoting types it back: control characters (`\n`,
/// `\u001b`), a backslash (`\\`, so that a name holding the two
/// characters `\n` is not shown like one holding a newline), a byte of a
/// file name that is not UTF-8 (held in the name as one of
/// `U+EF80`–`U+EFFF`, see [`seccs_store::file_name`]) as `\xNN`, and
/// characters a terminal draws as nothing, as a blank or reordered
/// (`\u200b`, `\u00a0`, `\u202e`, private-use characters, a space at
/// either end as `\x20`), so that a name can neither forge a line of a
/// listing nor send the terminal an escape sequence, and no two names
/// look alike. `--json` gives names exactly.
pub fn shown_name(name: &str, kind: EntryKind) -> String {
    escaped(name, kind, true)
}

/// A name shown with the characters that stand for bytes as the
/// characters they are (`\uef80`): for a name refused because it holds
/// one.
pub fn shown_literally(name: &str) -> String {
    escaped(name, EntryKind::File, false)
}

fn escaped(name: &str, kind: EntryKind, held_as_bytes: bool) -> String {
    let mut shown = String::with_capacity(name.len() + 1);
    let last = name.chars().count().saturating_sub(1);
    for (i, c) in name.chars().enumerate() {
        match (c, file_name::held_byte(c)) {
            (_, Some(b)) if held_as_bytes => shown.push_str(&format!("\\x{b:02x}")),
            ('\\', _) => shown.push_str("\\\\"),
            ('\n', _) => shown.push_str("\\n"),
            ('\t', _) => shown.push_str("\\t"),
            ('\r', _) => shown.push_str("\\r"),
            (' ', _) if i == 0 || i == last => shown.push_str("\\x20"),
            _ if c.is_control() || (c.is_whitespace() && c != ' ') || is_invisible(c) => {
                // As bash's `$'…'` reads them: exactly four or eight digits.
                match u32::from(c) {
                    code @ ..=0xFFFF => shown.push_str(&format!("\\u{code:04x}")),
                    code => shown.push_str(&format!("\\U{code:08x}")),
                }
            }
            _ => shown.push(c),
        }
    }
    if kind == EntryKind::Directory {
        shown.push('/');
    }
    shown
}

/// A shown name (see [`shown_name`]) as a shell command line types it: as
/// it is when it holds nothing the shell reads, else in `$'…'` quoting,
/// which reads the escapes a listing shows.
pub fn typed(shown: &str) -> String {
    let plain = |c: char| c.is_alphanumeric() || "/._-+@,:=%^".contains(c);
    if shown.chars().all(plain) {
        return shown.to_owned();
    }
    format!("$'{}'", shown.replace('\'', "\\'"))
}

/// Characters a terminal shows as nothing, or that change how the rest of
/// a line is drawn: format characters (zero-width, joiners, direction
/// marks and overrides, the byte order mark, musical and shorthand format
/// controls), fillers and blanks, non-characters, tags, and private-use
/// characters (drawn by no standard font).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{E000}'..='\u{F8FF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFF}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
            | '\u{F0000}'..='\u{10FFFF}'
    )
}

/// A path as messages show it: escaped as [`shown_name`] escapes a name,
/// so that a file name in an error cannot send the terminal an escape
/// sequence, and its bytes that are not UTF-8 are shown as `\xNN`.
pub fn shown_path(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match file_name::name_of_bytes(bytes) {
        Some(name) => shown_name(&name, EntryKind::File),
        None => shown_literally(&path.to_string_lossy()),
    }
}

/// Why a name that holds one of the characters standing for bytes is not
/// put: it would come back as other bytes.
const HOLDS_HELD_CHARACTERS: &str = "holds a character of U+EF80-U+EFFF, which seccs uses \
                                     to store bytes of names that are not UTF-8";

/// Whether `name` is `dir` or a name under it (`dir/…`), not a sibling
/// that only starts the same (`dir-2019/…`).
pub fn within(name: &str, dir: &str) -> bool {
    name == dir
        || name
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The name a file name's bytes are stored under (see
/// [`seccs_store::file_name`]); `None` when it holds one of the characters
/// that stand for bytes, and could not come back as it is.
fn part_name(part: &OsStr) -> Option<String> {
    file_name::name_of_bytes(part.as_bytes())
}

/// The file name a part of a name stands for: the inverse of [`part_name`].
fn part_path(part: &str) -> OsString {
    OsString::from_vec(file_name::bytes_of_name(part).into_owned())
}

/// Normalizes a path into a name: drops leading `/`, `.` and `..`
/// components and joins the rest with `/`, each part as [`part_name`]
/// makes it (a part that holds the characters standing for bytes, which
/// the put walk refuses before naming it, as it is).
pub fn name_of(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => {
                parts.push(part_name(p).unwrap_or_else(|| p.to_string_lossy().into_owned()))
            }
            Component::ParentDir if !parts.is_empty() => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Fails when `..` in `path` follows a symlink: names are made from the
/// path as written (`a/../b` is `b`), but the system resolves `..` from
/// the link's target, so the files read would be another directory's,
/// stored under this one's names (and this one's marked gone).
fn refuse_dot_dot_after_a_link(path: &Path) -> Result<()> {
    let mut so_far = PathBuf::new();
    for c in path.components() {
        if c == Component::ParentDir {
            let mut above = so_far.clone();
            loop {
                if above.is_symlink() {
                    bail!(
                        "cannot put {}: `..` follows the symlink {}, so it leads out of the \
                         link's target, not back to where the name says; give the path \
                         without it (as `realpath` prints it)",
                        shown_path(path),
                        shown_path(&above)
                    );
                }
                if !above.pop() {
                    break;
                }
            }
        }
        so_far.push(c);
    }
    Ok(())
}

/// What a walk of the directory found.
#[derive(Default)]
struct Walk {
    /// Files and symlinks to store.
    found: Vec<Found>,
    /// What to report (and exit non-zero for).
    problems: Vec<String>,
    /// Names of everything found that is not a directory, stored or not.
    present: HashSet<String>,
    /// Names of directories that could not be listed whole: what the
    /// catalog holds under them may still be there.
    unlisted: Vec<String>,
    /// How many entries `--exclude` left out (a directory counts once).
    excluded: usize,
    /// How many directories `--one-file-system` did not enter.
    mount_points: usize,
    /// Names of the sockets, FIFOs and devices found: not stored.
    special: Vec<String>,
    /// The name of the store's own directory, when the walk met it.
    own_store: Option<String>,
}

/// What a walk enters.
struct Scope<'a> {
    /// What to leave out.
    exclude: &'a Excludes,
    /// The device of the directory put, when the walk stays on its file
    /// system: a directory on another (a mount point) is recorded, empty,
    /// as tar records it, and not entered.
    device: Option<u64>,
    /// Device and inode of the store's own directory, never stored: a
    /// store inside what it stores would hold a stale copy of itself, and
    /// grow by it with every put.
    store_dir: Option<(u64, u64)>,
}

/// The names in the directory open as `fd`, sorted, without `.` and `..`;
/// and the error that ended the listing early, if one did.
fn list_names(fd: &OwnedFd) -> (Vec<OsString>, Option<std::io::Error>) {
    let mut names = Vec::new();
    let dir = match rustix::fs::Dir::read_from(fd) {
        Ok(d) => d,
        Err(e) => return (names, Some(e.into())),
    };
    let mut failed = None;
    for entry in dir {
        match entry {
            Ok(e) => {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsString::from_vec(n.to_vec()));
                }
            }
            Err(e) => {
                failed = Some(e.into());
                break;
            }
        }
    }
    names.sort();
    (names, failed)
}

/// The extended attributes of the entry `name` in the directory open as
/// `dir` (a link's own), reached through that directory rather than
/// through `path` from the top, which a directory swapped for a link
/// could lead elsewhere; through `path` only where `/proc` is not there.
fn xattrs_at(
    dir: &OwnedFd,
    name: &OsStr,
    path: &Path,
) -> std::io::Result<Vec<seccs_store::catalog::Xattr>> {
    let held = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(dir)
    ));
    match held.is_dir() {
        true => crate::xattr::of_entry(&held.join(name)),
        false => crate::xattr::of_entry(path),
    }
}

/// Opens the directory `name` in the directory open as `parent`, without
/// following a link, and checks that it is the directory `seen` said.
fn open_dir_at(
    parent: &OwnedFd,
    name: &OsStr,
    seen: &Seen,
    path: &Path,
) -> Result<OwnedFd, String> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let replaced = || {
        format!(
            "cannot read directory {}: it was replaced while the put ran",
            shown_path(path)
        )
    };
    let fd = match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => return Err(replaced()),
        Err(e) => {
            return Err(format!(
                "cannot read directory {}: {}",
                shown_path(path),
                std::io::Error::from(e)
            ));
        }
    };
    match rustix::fs::fstat(&fd) {
        Ok(st) if Seen::from(&st).identity() == seen.identity() => Ok(fd),
        Ok(_) => Err(replaced()),
        Err(e) => Err(format!(
            "cannot read directory {}: {}",
            shown_path(path),
            std::io::Error::from(e)
        )),
    }
}

/// Walks the directory open as `fd`, at `dir` (shown in reports) and at
/// `rel` under the directory put. Every entry is listed, stat'ed and (a
/// link) read through the directory's descriptor, and a directory is
/// entered by opening its name in it without following a link: a
/// directory swapped for a link while the walk runs cannot lead it out of
/// the tree. Open descriptors are one per level of the tree.
fn walk(fd: &OwnedFd, dir: &Path, rel: &Path, scope: &Scope<'_>, w: &mut Walk) {
    let (names, failed) = list_names(fd);
    if let Some(e) = failed {
        w.problems
            .push(format!("cannot read directory {}: {e}", shown_path(dir)));
        w.unlisted.push(name_of(dir));
    }
    for part in names {
        let path = dir.join(&part);
        // A name's bytes that are not UTF-8 are held as characters that
        // stand for them; a name that holds such a character itself would
        // come back as other bytes (or as another file's name).
        if part_name(&part).is_none() {
            w.problems.push(format!(
                "skipped {}: its name {HOLDS_HELD_CHARACTERS}",
                shown_literally(&path.to_string_lossy())
            ));
            continue;
        }
        let name = name_of(&path);
        let seen = match rustix::fs::statat(fd, &part, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Seen::from(&st),
            Err(e) => {
                w.problems.push(format!(
                    "cannot read {}: {}",
                    shown_path(&path),
                    std::io::Error::from(e)
                ));
                // It may be a directory: keep what is under it too.
                w.unlisted.push(name.clone());
                w.present.insert(name);
                continue;
            }
        };
        if scope.exclude.excludes(&name, seen.is_dir()) {
            // Not present: what an earlier put stored under the name is
            // marked gone, as for a deleted file.
            w.excluded += 1;
            continue;
        }
        if !(seen.is_dir() || seen.is_file() || seen.is_symlink()) {
            // A socket, FIFO or device holds no bytes a put could read (a
            // FIFO's would be another process's stream): named in the
            // summary, as tar says "socket ignored", not a failure. Not
            // present either: a file or directory it replaced is gone.
            w.special.push(name);
            continue;
        }
        if seen.is_dir() && scope.store_dir == Some(seen.identity()) {
            // Not present: what an earlier put stored of it is gone.
            w.own_store = Some(name);
            continue;
        }
        w.present.insert(name.clone());
        let rel = rel.join(&part);
        if seen.is_dir() {
            let elsewhere = scope.device.is_some_and(|d| seen.dev != d);
            w.found.push(Found::Dir {
                xattrs: xattrs_at(fd, &part, &path),
                path: path.clone(),
                name: name.clone(),
                seen,
            });
            if elsewhere {
                // What an earlier put stored under it is marked gone, as
                // for an excluded directory.
                w.mount_points += 1;
                continue;
            }
            match open_dir_at(fd, &part, &seen, &path) {
                Ok(child) => walk(&child, &path, &rel, scope, w),
                Err(problem) => {
                    w.problems.push(problem);
                    w.unlisted.push(name);
                }
            }
            continue;
        }
        if seen.is_file() {
            w.found.push(Found::File {
                path,
                rel,
                name,
                seen,
            });
            continue;
        }
        match rustix::fs::readlinkat(fd, &part, Vec::new()) {
            Ok(target) => w.found.push(Found::Symlink {
                xattrs: xattrs_at(fd, &part, &path),
                path,
                name,
                seen,
                target: target.into_bytes(),
            }),
            // No longer a link (EINVAL): swapped for something else since
            // it was stat'ed.
            Err(rustix::io::Errno::INVAL) => w.problems.push(format!(
                "cannot read link {}: it was replaced while the put ran",
                shown_path(&path)
            )),
            Err(e) => w.problems.push(format!(
                "cannot read link {}: {}",
                shown_path(&path),
                std::io::Error::from(e)
            )),
        }
    }
}

/// The names under `prefix` (which ends in `/`) that a walk did not find:
/// not present, and not under a directory it could not list. `listed` is
/// every name the catalog holds under `prefix` that is not gone already.
fn missing_names<'a>(
    listed: impl IntoIterator<Item = &'a str>,
    present: &HashSet<String>,
    unlisted: &[String],
) -> Vec<String> {
    listed
        .into_iter()
        .filter(|name| !present.contains(*name))
        .filter(|name| {
            !unlisted
                .iter()
                .any(|dir| dir.is_empty() || within(name, dir))
        })
        .map(str::to_owned)
        .collect()
}

/// Whose a restored file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The owner and group it was put with: the default for root, as tar's
    /// `--same-owner`.
    AsPut,
    /// The user running the restore: the only choice for anyone but root.
    Restorer,
}

impl Ownership {
    /// `AsPut` when this process runs as root and `same_owner` allows it.
    pub fn for_this_process(same_owner: bool) -> Self {
        match same_owner && rustix::process::geteuid().is_root() {
            true => Ownership::AsPut,
            false => Ownership::Restorer,
        }
    }
}

/// What a restore not run as root could not give back of `versions`, when
/// anything: owners other than the restorer's, and extended attributes only
/// root may set. Said, not failed (tar says nothing at all).
fn unprivileged_note<'v>(versions: impl Iterator<Item = &'v Version>) -> Option<String> {
    use rustix::process::{getegid, geteuid};
    if geteuid().is_root() {
        return None;
    }
    let me = Owner {
        uid: geteuid().as_raw(),
        gid: getegid().as_raw(),
    };
    let (mut owners, mut attributes) = (0, 0);
    for v in versions {
        owners += usize::from(v.owner.is_some_and(|o| o != me));
        attributes += usize::from(v.xattrs.iter().any(|x| !crate::xattr::settable_by_owner(x)));
    }
    let mut parts = Vec::new();
    if owners > 0 {
        parts.push(format!(
            "{owners} entries were put with another owner or group and are yours now"
        ));
    }
    if attributes > 0 {
        parts.push(format!(
            "{attributes} entries keep extended attributes only root may set (security., \
             trusted.) that were not set"
        ));
    }
    (!parts.is_empty()).then(|| format!("{}; only root can give those back", parts.join("; ")))
}

/// What a file restored from `version` takes from it: its permission bits,
/// when its stamp was recorded its modification time, the extended
/// attributes its owner may set (`user.`, ACLs), with [`Ownership::AsPut`]
/// its owner and group, and when this process runs as root every other
/// extended attribute (only root may set them).
pub fn attrs_of(version: &Version, ownership: Ownership) -> FileAttrs {
    let as_root = rustix::process::geteuid().is_root();
    let owner = version
        .owner
        .filter(|_| ownership == Ownership::AsPut)
        .map(|o| (o.uid, o.gid));
    // A file not given its owner back keeps setuid (setgid) only if the
    // restorer is the user (group) it was put with, as `cp -p` and tar
    // do: someone's setuid program must not come back setuid-root.
    let mut mode = version.mode.map(FileMode::bits);
    if owner.is_none()
        && let Some(bits) = mode.as_mut()
    {
        let recorded = version.owner;
        if recorded.is_none_or(|o| o.uid != rustix::process::geteuid().as_raw()) {
            *bits &= !0o4000;
        }
        if recorded.is_none_or(|o| o.gid != rustix::process::getegid().as_raw()) {
            *bits &= !0o2000;
        }
    }
    FileAttrs {
        mode,
        owner,
        xattrs: version
            .xattrs
            .iter()
            .filter(|x| as_root || crate::xattr::settable_by_owner(x))
            .cloned()
            .collect(),
        modified: version.stamp.as_ref().map(Stamp::file_stamp).and_then(|s| {
            let nanos = Duration::from_nanos(u64::from(s.mtime_ns.min(999_999_999)));
            let secs = Duration::from_secs(s.mtime_s.unsigned_abs());
            if s.mtime_s >= 0 {
                UNIX_EPOCH.checked_add(secs + nanos)
            } else {
                UNIX_EPOCH.checked_sub(secs)?.checked_add(nanos)
            }
        }),
    }
}

/// The version of `record` a tree restore writes: the one it held at `at`,
/// or without a time its newest unless it is gone.
pub(crate) fn version_to_restore(record: &Record, at: Option<u64>) -> Option<&Version> {
    match at {
        Some(t) => record.at(t),
        None if record.is_gone() => None,
        None => record.latest(),
    }
}

/// The record of the directory that `prefix` (`DIR/`) names, when a put of
/// its parent recorded one and its newest version is a directory: a tree's
/// restore gives it its bits and time, a tree's removal removes it too.
pub fn directory_named_by(store: &Store, prefix: &str) -> Result<Option<Record>> {
    let name = prefix.trim_end_matches('/');
    if name.is_empty() {
        return Ok(None);
    }
    let record = store
        .lookup(name)
        .with_context(|| format!("cannot look up {}", shown_name(name, EntryKind::Directory)))?;
    Ok(record.filter(|r| r.latest().is_some_and(|v| v.kind == EntryKind::Directory)))
}

/// The time now, as a duration since the Unix epoch.
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// What a put that started at `start` records of the file or directory
/// `meta` describes: its stamp, settled when the file can be recognized by
/// it later (see `stamp_is_settled`), its permission bits, its owner and,
/// for a regular file, its device and link count (for a restore to know
/// its hard links); not its extended attributes, which `stat` does not
/// give.
fn recorded_attrs(meta: &Seen, start: Duration) -> FileMeta {
    let stamp = stamp_of(meta);
    let stamp = if stamp_is_settled(&stamp, start) {
        Stamp::Settled(stamp)
    } else {
        Stamp::Recent(stamp)
    };
    FileMeta {
        stamp: Some(stamp),
        mode: Some(FileMode::from_st_mode(meta.mode)),
        owner: Some(Owner {
            uid: meta.uid,
            gid: meta.gid,
        }),
        xattrs: Vec::new(),
        hard_links: meta.is_file().then_some(HardLinks {
            device: meta.dev,
            nlink: meta.nlink,
        }),
    }
}

/// "entry" or "entries", for a count of `n` (any unsigned integer).
pub(crate) fn entries<N: PartialEq + From<u8>>(n: N) -> &'static str {
    if n == N::from(1) { "entry" } else { "entries" }
}

/// What a put records of one entry, and a report when that is less than
/// all of it.
pub struct Recorded {
    /// For the version.
    pub meta: FileMeta,
    /// Why the entry is stored without its extended attributes, if it is.
    pub report: Option<String>,
}

/// [`recorded_attrs`] and the extended attributes of a file opened for
/// reading, taken before it is read (a later write changes them).
pub fn opened_attrs(file: &File, path: &Path, start: Duration) -> Result<Recorded> {
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the metadata of {}", shown_path(path)))?;
    let mut recorded = recorded_attrs(&Seen::from(&meta), start);
    // A pipe or a device (`put <(cmd)`, `put /dev/fd/3`) has no length or
    // times that say whether its bytes changed: it gets no stamp, so it is
    // neither skipped as unchanged nor said to have changed while read.
    // Nor its permission bits, owner or extended attributes: they are the
    // node's (0666 and root for /dev/null, a tty's user, a device's
    // security label), not those of a file, and a restore would give them
    // to one.
    if !meta.is_file() {
        recorded.stamp = None;
        recorded.mode = None;
        recorded.owner = None;
        return Ok(Recorded {
            meta: recorded,
            report: None,
        });
    }
    Ok(with_xattrs(recorded, crate::xattr::of_file(file), path))
}

/// [`recorded_attrs`] and the extended attributes the walk read of the
/// directory or link at `path` (the link's own).
fn entry_attrs(
    path: &Path,
    seen: &Seen,
    xattrs: &std::io::Result<Vec<seccs_store::catalog::Xattr>>,
    start: Duration,
) -> Recorded {
    let xattrs = match xattrs {
        Ok(x) => Ok(x.clone()),
        Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
    };
    with_xattrs(recorded_attrs(seen, start), xattrs, path)
}

/// `meta` with the extended attributes read for it. When they could not
/// be read, the entry is still stored (its bytes matter more), without
/// them and with a recent stamp, so that the next put reads it again and
/// tries once more; the report says so.
fn with_xattrs(
    meta: FileMeta,
    xattrs: std::io::Result<Vec<seccs_store::catalog::Xattr>>,
    path: &Path,
) -> Recorded {
    match xattrs {
        Ok(xattrs) => Recorded {
            meta: FileMeta { xattrs, ..meta },
            report: None,
        },
        Err(e) => Recorded {
            meta: FileMeta {
                stamp: meta.stamp.map(|s| Stamp::Recent(*s.file_stamp())),
                ..meta
            },
            report: Some(format!(
                "stored {} without its extended attributes: cannot read them ({e}); \
                 the next put tries again",
                shown_path(path)
            )),
        },
    }
}

/// Opens `rel` under the directory open as `top` with `flags`, following
/// no symlink on the way (`openat2` with `RESOLVE_NO_SYMLINKS`; where the
/// kernel has no `openat2`, or the path is longer than it takes, one
/// directory at a time, each opened without following a link).
fn open_beneath(
    top: &OwnedFd,
    rel: &Path,
    flags: rustix::fs::OFlags,
) -> rustix::io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use rustix::io::Errno;
    match rustix::fs::openat2(top, rel, flags, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
        Err(Errno::NOSYS | Errno::NAMETOOLONG | Errno::PERM) => {}
        done => return done,
    }
    let parts: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p),
            _ => None,
        })
        .collect();
    let Some((last, above)) = parts.split_last() else {
        return Err(Errno::INVAL);
    };
    let step = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut held: Option<OwnedFd> = None;
    for part in above {
        let next = match &held {
            Some(fd) => rustix::fs::openat(fd, *part, step, Mode::empty())?,
            None => rustix::fs::openat(top, *part, step, Mode::empty())?,
        };
        held = Some(next);
    }
    match &held {
        Some(fd) => rustix::fs::openat(fd, *last, flags, Mode::empty()),
        None => rustix::fs::openat(top, *last, flags, Mode::empty()),
    }
}

/// Opens the file the walk found at `rel` under the directory open as
/// `top` (shown as `path`) for reading, without following a symlink
/// anywhere on the way or waiting on a FIFO, and only if it is still the
/// file the walk saw (`seen`, by device and inode): it may have been
/// replaced by a link, a FIFO or another file since, or a directory above
/// it by a link, which could lead out of the tree being put, a FIFO block
/// the put for good.
fn open_regular(top: &OwnedFd, rel: &Path, path: &Path, seen: &Seen) -> Result<File> {
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let replaced = || {
        anyhow::anyhow!(
            "cannot read {}: it or a directory above it was replaced while the put ran; \
             not stored",
            shown_path(path)
        )
    };
    let fd = open_beneath(top, rel, flags).map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR | rustix::io::Errno::XDEV => replaced(),
        e => anyhow::Error::new(std::io::Error::from(e))
            .context(format!("cannot read {}", shown_path(path))),
    })?;
    let file = File::from(fd);
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", shown_path(path)))?;
    if !meta.is_file() {
        bail!(
            "cannot read {}: it is no longer a regular file (replaced while the put ran)",
            shown_path(path)
        );
    }
    if Seen::from(&meta).identity() != seen.identity() {
        return Err(replaced());
    }
    Ok(file)
}

/// A report when the open file `file` (at `path`) is no longer as
/// `opened` stamped it before `read_len` bytes were read from it (written
/// meanwhile, as tar and borg check): the bytes stored may then mix old
/// and new ones. Its stamp then differs from the recorded one (a write
/// within the same clock tick shows in its length), so the next put reads
/// it again. Asked of the open file, not of its path, which may lead to
/// another file by now.
pub fn changed_while_read(
    file: &File,
    path: &Path,
    opened: Option<&Stamp>,
    read_len: u64,
) -> Option<String> {
    let opened = opened?.file_stamp();
    let now = file.metadata().ok().map(|m| {
        let seen = Seen::from(&m);
        (stamp_of(&seen), seen.size)
    });
    (now != Some((*opened, read_len))).then(|| {
        format!(
            "{} changed while it was read: what was stored may mix old and new bytes \
             (the next put reads it again)",
            shown_path(path)
        )
    })
}

fn stamp_of(meta: &Seen) -> FileStamp {
    FileStamp {
        mtime_s: meta.mtime,
        mtime_ns: u32::try_from(meta.mtime_nsec).unwrap_or(0),
        ctime_s: meta.ctime,
        ctime_ns: u32::try_from(meta.ctime_nsec).unwrap_or(0),
        inode: meta.ino,
    }
}

/// Whether a file with `stamp`, read after `start`, can be recognized by its
/// stamp later: its change time must lie before `start` by more than the
/// file system's timestamp tick. A whole-second change time suggests a file
/// system that keeps seconds only (or two: FAT), so it needs a wider margin
/// than the kernel's clock tick of a few milliseconds.
fn stamp_is_settled(stamp: &FileStamp, start: Duration) -> bool {
    let margin = match stamp.ctime_ns {
        0 => Duration::from_secs(3),
        _ => Duration::from_millis(100),
    };
    let Ok(secs) = u64::try_from(stamp.ctime_s) else {
        return false;
    };
    Duration::new(secs, stamp.ctime_ns.min(999_999_999)) + margin < start
}

/// How `seccs put DIR` runs.
pub struct TreePut {
    /// Draw a progress bar.
    pub progress: bool,
    /// Print no summary.
    pub quiet: bool,
    /// Do not read files whose stamp matches their name's newest version.
    pub skip_unchanged: bool,
    /// What to leave out.
    pub exclude: Excludes,
    /// Only say what a put would read, skip and mark gone; write nothing.
    pub dry_run: bool,
    /// Do not enter directories on other file systems than `dir`'s.
    pub one_file_system: bool,
    /// The store's own directory, which the walk leaves out.
    pub store_dir: Option<PathBuf>,
}

/// Stores every file, symlink and directory under `dir`.
pub fn put_tree(store: &Store, dir: &Path, how: &TreePut) -> Result<()> {
    let start = since_epoch();
    if dir
        .components()
        .any(|c| matches!(c, Component::Normal(p) if part_name(p).is_none()))
    {
        bail!(
            "cannot put {}: its path {HOLDS_HELD_CHARACTERS}",
            shown_literally(&dir.to_string_lossy())
        );
    }
    refuse_dot_dot_after_a_link(dir)?;
    let root = name_of(dir);
    let mut w = Walk::default();
    // Everything under DIR is reached from this descriptor, never again
    // through the path given.
    let top = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| {
        let seen = Seen::from(&rustix::fs::fstat(&fd)?);
        Ok((fd, seen))
    });
    // DIR itself is recorded too (as tar records it), so that a restore
    // gives it its bits and time; `.` and `/` name no entry.
    if !root.is_empty()
        && let Ok((fd, seen)) = &top
    {
        w.found.push(Found::Dir {
            path: dir.to_path_buf(),
            name: root.clone(),
            seen: *seen,
            xattrs: crate::xattr::of_file(&File::from(fd.try_clone()?)),
        });
    }
    let device = match (how.one_file_system, &top) {
        (true, Ok((_, seen))) => Some(seen.dev),
        (true, Err(e)) => bail!("cannot read {}: {e}", shown_path(dir)),
        (false, _) => None,
    };
    let store_dir = how
        .store_dir
        .as_deref()
        .and_then(|d| fs::metadata(d).ok())
        .map(|m| (m.dev(), m.ino()));
    if let Some(store_dir) = store_dir
        && let Ok((_, seen)) = &top
        && seen.identity() == store_dir
    {
        bail!(
            "cannot put {}: it is the store's own directory",
            shown_path(dir)
        );
    }
    let scope = Scope {
        exclude: &how.exclude,
        device,
        store_dir,
    };
    let top = match top {
        Ok((fd, _)) => {
            // The walk holds a directory open for each level it is in: a
            // tree deeper than the usual soft limit of 1,024 (far below
            // the hard limit on most systems) would otherwise stop at it.
            crate::harden::raise_open_file_limit(u64::MAX);
            walk(&fd, dir, Path::new(""), &scope, &mut w);
            Some(fd)
        }
        Err(e) => {
            w.problems
                .push(format!("cannot read directory {}: {e}", shown_path(dir)));
            w.unlisted.push(root.clone());
            None
        }
    };
    let Walk {
        found,
        mut problems,
        present,
        unlisted,
        excluded,
        mount_points,
        special,
        own_store,
    } = w;
    let left_out = LeftOut {
        excluded,
        mount_points,
        special,
        own_store,
    };
    let total: u64 = found
        .iter()
        .map(|f| match f {
            Found::File { seen, .. } => seen.size,
            Found::Symlink { .. } | Found::Dir { .. } => 0,
        })
        .sum();
    // Every name under the directory, read once: for the stamp checks and
    // to find the names whose files are gone. Records that fail to
    // authenticate are reported (and their files read and put, which fails
    // for them alone); if the listing itself fails, each file is looked up
    // alone and nothing is marked gone.
    let prefix = if root.is_empty() {
        String::new()
    } else {
        format!("{root}/")
    };
    let known: Result<HashMap<String, Record>> = match store.list_readable(&prefix) {
        Ok(listing) => {
            if let Some(e) = listing.damage() {
                problems.push(e.to_string());
            }
            Ok(listing
                .records
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect())
        }
        Err(e) => Err(e).with_context(|| format!("cannot list the names under {prefix:?}")),
    };
    let unchanged = |name: &str, kind, len, stamp: &FileStamp| -> Result<Option<Version>> {
        if !how.skip_unchanged {
            return Ok(None);
        }
        Ok(match &known {
            // DIR itself is not under DIR/, so not in the listing.
            Ok(records) if name != root => records
                .get(name)
                .and_then(|r| r.unchanged_since(kind, len, stamp))
                .cloned(),
            _ => store
                .unchanged_since_stamp(name, kind, len, stamp)
                .with_context(|| format!("cannot look up {}", shown_name(name, kind)))?,
        })
    };
    if how.dry_run {
        return dry_run(
            &found,
            &unchanged,
            &root,
            &known,
            (&present, &unlisted),
            &left_out,
            problems,
        );
    }
    let bar = crate::progress::bytes(total, !how.progress);
    // Durability once at the end (and every batch stays atomic): one fsync
    // per file would dominate a tree of small files.
    store.backend().set_sync_each_batch(false);
    let changed = std::sync::Mutex::new(Vec::new());
    // Reports of entries stored all the same (changed while read, stored
    // without their attributes), said with the other problems at the end.
    let report_later = |reports: &mut dyn Iterator<Item = String>| {
        changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(reports);
    };
    let put_found = |f: &Found| -> Result<(String, bool)> {
        let (name, kind, len, stamp) = f.identity();
        if let Some(v) = unchanged(name, kind, len, &stamp)? {
            if kind == EntryKind::File {
                bar.inc(len);
            }
            return Ok((
                format!("{}  {}", v.content_ref, shown_name(name, kind)),
                true,
            ));
        }
        let outcome = match f {
            Found::File {
                path,
                rel,
                name,
                seen,
            } => {
                let top = top
                    .as_ref()
                    .with_context(|| format!("cannot read {}", shown_path(path)))?;
                let file = open_regular(top, rel, path, seen)?;
                // The stamp of what is opened (the walk's may be of a
                // file since replaced), taken before reading: a later
                // write changes it.
                let Recorded { meta, report } = opened_attrs(&file, path, start)?;
                let stamp = meta.stamp;
                let mut reader = bar.wrap_read(&file);
                let (o, _) = store
                    .put_named_stamped(&mut reader, name, EntryKind::File, meta)
                    .with_context(|| format!("cannot store {}", shown_path(path)))?;
                let read_len = o.content_ref.len();
                let reports = report.into_iter().chain(changed_while_read(
                    &file,
                    path,
                    stamp.as_ref(),
                    read_len,
                ));
                report_later(&mut reports.into_iter());
                o
            }
            Found::Symlink {
                path,
                name,
                seen,
                target,
                xattrs,
            } => {
                // A link is never changed in place, only replaced (a new
                // inode and change time), so the walk's stamp is this
                // link's or one no later link will have. Its bits mean
                // nothing on Linux.
                let Recorded { meta, report } = entry_attrs(path, seen, xattrs, start);
                let meta = FileMeta { mode: None, ..meta };
                let (o, _) = store
                    .put_named_stamped(&mut target.as_slice(), name, EntryKind::Symlink, meta)
                    .with_context(|| format!("cannot store {}", shown_path(path)))?;
                report_later(&mut report.into_iter());
                o
            }
            Found::Dir {
                path,
                name,
                seen,
                xattrs,
            } => {
                let Recorded { meta, report } = entry_attrs(path, seen, xattrs, start);
                let (o, _) = store
                    .put_named_stamped(&mut std::io::empty(), name, EntryKind::Directory, meta)
                    .with_context(|| format!("cannot store {}", shown_path(path)))?;
                report_later(&mut report.into_iter());
                o
            }
        };
        Ok((
            format!("{}  {}", outcome.content_ref, shown_name(name, kind)),
            false,
        ))
    };
    // The put stops at the backend's first failure, and says it once
    // rather than once per file left.
    let backend_failed = FirstBackendFailure::default();
    let results: Vec<Option<Result<(String, bool)>>> = found
        .par_iter()
        .map(|f| backend_failed.run(|| put_found(f)))
        .collect();
    if let Some(e) = backend_failed.into_inner() {
        bar.finish_and_clear();
        for problem in results.iter().flatten().filter_map(|r| r.as_ref().err()) {
            errln!("seccs: {problem:#}");
        }
        let left = results.iter().filter(|r| r.is_none()).count();
        // Only a backend that writes each batch in one transaction keeps
        // a failed batch whole or absent (S3 may keep part of it).
        let batches = if store.backend().is_transactional() {
            "each batch whole or absent"
        } else {
            "though the batch that failed may have left entries no name needs, which \
             `seccs gc` removes"
        };
        if let Some(full) = backend_no_room(&e) {
            bail!(
                "{full}; the put stopped there, {left} of {} entries not yet tried, and the \
                 entries of the batch that failed not stored either: what was stored before \
                 stays ({batches}), and the same put run again stores the \
                 rest (what is unchanged since it was stored is not read again)",
                found.len()
            );
        }
        let lost = e.chain().any(|cause| {
            matches!(
                backend_error(cause),
                Some(seccs_store::backend::BackendError::StoreLost { .. })
            )
        });
        if lost {
            // The store's data went with its marker: a rerun is refused
            // ("holds none of this store's data"), so none is promised.
            return Err(e.context(format!(
                "put stopped at the backend's first failure, {left} of {} entries not yet \
                 tried; there is nothing to resume: the backend lost the store, with what \
                 this put and earlier ones stored, and the same put run again is refused. \
                 Restore the server's data from a backup if it has one, or make a new store \
                 (`seccs init`) and put the files into it",
                found.len()
            )));
        }
        return Err(e.context(format!(
            "put stopped at the backend's first failure, {left} of {} entries not yet \
             tried, and the entries of the batch that failed not stored either; what the \
             backend completed before it stays ({batches}), and the same put run again \
             stores the rest",
            found.len()
        )));
    }
    let results: Vec<Result<(String, bool)>> = results.into_iter().flatten().collect();
    // Marked in the same deferred writes as the puts, made durable with them.
    let gone = match mark_missing_gone(store, &root, known, &present, &unlisted) {
        Ok(n) => n,
        Err(e) => {
            problems.push(format!("{e:#}"));
            0
        }
    };
    store.backend().set_sync_each_batch(true);
    if let Err(e) = store.backend().flush() {
        // What was put waits in the last batch, which is not stored:
        // no reference is printed as stored, each failure is said.
        bar.finish_and_clear();
        let failed_n = results.iter().filter(|r| r.is_err()).count();
        for problem in results.iter().filter_map(|r| r.as_ref().err()) {
            errln!("seccs: {problem:#}");
        }
        for problem in &problems {
            errln!("seccs: {problem}");
        }
        let failed = match failed_n {
            0 => String::new(),
            n => format!(" ({n} more failed, said above)"),
        };
        return Err(anyhow::Error::from(e).context(format!(
            "put of {} stopped writing its last batch to the backend: of the {}{failed}, \
             those in batches the backend completed before are stored (each batch whole or \
             absent), the rest are not; the same put run again stores the rest",
            shown_path(dir),
            match results.len() - failed_n {
                1 => "1 entry put".to_owned(),
                n => format!("{n} entries put"),
            },
        )));
    }
    bar.finish_and_clear();
    let mut out = crate::output::report_out();
    let (mut stored, mut unchanged) = (0, 0);
    for r in results {
        match r {
            Ok((line, skipped)) => {
                writeln!(out, "{line}")?;
                stored += 1;
                unchanged += usize::from(skipped);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    problems.extend(
        changed
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    out.flush()?;
    if let Some(said) = left_out.special_said() {
        errln!("seccs: {said}");
    }
    if !how.quiet {
        errln!(
            "seccs: {stored} {} stored: {} read, {unchanged} unchanged since the last put (not read)",
            entries(stored),
            stored - unchanged
        );
        if let Some(said) = left_out.said() {
            errln!("seccs: {said}");
        }
        if gone > 0 {
            errln!(
                "seccs: {gone} name(s) under {}/ are gone (no longer in the directory); \
                 their versions stay readable as NAME@N until removed",
                name_of(dir)
            );
        }
        if root.is_empty() {
            errln!(
                "seccs: note: {} is stored at the store's top level, where other trees may be \
                 too, so names no longer in it are not marked gone; put it by its name \
                 (`cd ..; seccs put NAME`) to have them marked. `get / -o OUT` restores the \
                 top level",
                shown_path(dir)
            );
        }
    }
    report_problems(&problems, &format!("stored {stored} entries"))
}

/// The first error that every later request would repeat (the backend
/// went away or lost the store), for a command working through many
/// entries on several threads: it stops there and says it once.
#[derive(Default)]
struct FirstBackendFailure(std::sync::OnceLock<anyhow::Error>);

impl FirstBackendFailure {
    /// `work`'s result, or `None` when it was not tried (the backend had
    /// failed already) or failed in the way every later request would; only
    /// the first such failure is kept, a later one (another thread's request
    /// already under way) says the same.
    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Option<Result<T>> {
        if self.0.get().is_some() {
            return None;
        }
        match work() {
            Err(e) if fails_every_request(&e) => {
                let _ = self.0.set(e);
                None
            }
            other => Some(other),
        }
    }

    /// Whether a failure stopped the work.
    fn failed(&self) -> bool {
        self.0.get().is_some()
    }

    fn into_inner(self) -> Option<anyhow::Error> {
        self.0.into_inner()
    }
}

/// Whether an error comes from a backend failure that every later request
/// would repeat (see `BackendError::fails_every_request`), or from a write
/// of the command's own that every later write would repeat (a full disk).
fn fails_every_request(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        backend_error(cause).is_some_and(seccs_store::backend::BackendError::fails_every_request)
            || cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(seccs_store::backend::is_no_room)
    })
}

/// The backend's error that `cause` is, itself or as the store's.
fn backend_error<'e>(
    cause: &'e (dyn std::error::Error + 'static),
) -> Option<&'e seccs_store::backend::BackendError> {
    match cause.downcast_ref::<seccs_store::StoreError>() {
        Some(seccs_store::StoreError::Backend(b)) => Some(b),
        _ => cause.downcast_ref(),
    }
}

/// The backend's "no room" error in `e`'s chain, as said (it names the
/// place and what to do).
fn backend_no_room(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        backend_error(cause)
            .filter(|b| matches!(b, seccs_store::backend::BackendError::StorageFull { .. }))
            .map(ToString::to_string)
    })
}

/// What to say of `e` when a write of the command's own output under
/// `out` failed for want of room (which disk, what to do), else `None`.
fn output_no_room(e: &anyhow::Error, out: &Path) -> Option<String> {
    let io = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>())?;
    let said = seccs_store::backend::no_room(io, out)?;
    // The outermost context names the file.
    Some(format!("{e}: {said}"))
}

/// Prints each problem once, in the order first met, with how many more
/// entries had the same (a directory that cannot be made fails every
/// entry under it alike: said once, and counted).
fn say_once_each(problems: &[String]) {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut order = Vec::new();
    for p in problems {
        let n = seen.entry(p.as_str()).or_insert(0);
        if *n == 0 {
            order.push(p.as_str());
        }
        *n += 1;
    }
    for p in order {
        match seen.get(p).copied().unwrap_or(1) {
            0 | 1 => errln!("seccs: {p}"),
            n => errln!(
                "seccs: {p} (the same for {} more {})",
                n - 1,
                entries(n - 1)
            ),
        }
    }
}

/// Prints each problem and fails when there is one, after `done`.
fn report_problems(problems: &[String], done: &str) -> Result<()> {
    for p in problems {
        errln!("seccs: {p}");
    }
    if !problems.is_empty() {
        problems!("{done}; {} problem(s) reported above", problems.len());
    }
    Ok(())
}

/// Whether an entry (name, kind, length, stamp) is unchanged since its
/// name's newest version, which it then gives.
type UnchangedCheck<'a> = dyn Fn(&str, EntryKind, u64, &FileStamp) -> Result<Option<Version>> + 'a;

/// `seccs put DIR --dry-run`: one line per entry on stdout, `read` or
/// `unchanged` (what a put would do with it), `skip` for each socket, FIFO
/// or device, then `gone` for each name a put would mark gone; nothing is
/// read or written.
fn dry_run(
    found: &[Found],
    unchanged: &UnchangedCheck<'_>,
    root: &str,
    known: &Result<HashMap<String, Record>>,
    (present, unlisted): (&HashSet<String>, &[String]),
    left_out: &LeftOut,
    mut problems: Vec<String>,
) -> Result<()> {
    let mut out = crate::output::report_out();
    let (mut to_read, mut same) = (0, 0);
    for f in found {
        let (name, kind, len, stamp) = f.identity();
        let shown = shown_name(name, kind);
        match unchanged(name, kind, len, &stamp) {
            Ok(Some(_)) => {
                same += 1;
                writeln!(out, "unchanged  {shown}")?;
            }
            Ok(None) => {
                to_read += 1;
                writeln!(out, "read       {shown}")?;
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let records = known.as_ref().ok().filter(|_| !root.is_empty());
    let mut missing = records
        .map(|records| missing_names(live_names(records), present, unlisted))
        .unwrap_or_default();
    for name in &left_out.special {
        writeln!(out, "skip       {}", shown_name(name, EntryKind::File))?;
    }
    if let Some(name) = &left_out.own_store {
        writeln!(out, "skip       {}", shown_name(name, EntryKind::Directory))?;
    }
    missing.sort();
    for name in &missing {
        // Shown as every other line is: escaped, a directory with its `/`.
        let kind = records
            .and_then(|records| records.get(name)?.latest().map(|v| v.kind))
            .unwrap_or(EntryKind::File);
        writeln!(out, "gone       {}", shown_name(name, kind))?;
    }
    out.flush()?;
    errln!(
        "seccs: dry run, nothing stored: {to_read} {} to read, {same} unchanged, \
         {} name(s) to mark gone",
        entries(to_read),
        missing.len()
    );
    if let Some(said) = left_out.said() {
        errln!("seccs: {said}");
    }
    report_problems(&problems, &format!("checked {} entries", found.len()))
}

/// What a put's walk left out.
struct LeftOut {
    excluded: usize,
    mount_points: usize,
    special: Vec<String>,
    own_store: Option<String>,
}

impl LeftOut {
    /// One line saying so, when anything was.
    fn said(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.excluded > 0 {
            parts.push(format!(
                "{} {} left out by --exclude",
                self.excluded,
                entries(self.excluded)
            ));
        }
        if self.mount_points > 0 {
            parts.push(format!(
                "{} mount point(s) on other file systems not entered (--one-file-system)",
                self.mount_points
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The special files not stored, named, when there were any, and the
    /// store's own directory: said even with `--quiet`, since nothing is
    /// skipped silently.
    fn special_said(&self) -> Option<String> {
        const SHOWN: usize = 8;
        let own = self.own_store.as_ref().map(|name| {
            format!(
                "the store's own directory {} is not stored in itself",
                shown_name(name, EntryKind::Directory)
            )
        });
        if self.special.is_empty() {
            return own;
        }
        let mut named = self.special[..self.special.len().min(SHOWN)]
            .iter()
            .map(|name| shown_name(name, EntryKind::File))
            .collect::<Vec<_>>()
            .join(", ");
        if self.special.len() > SHOWN {
            named.push_str(&format!(" and {} more", self.special.len() - SHOWN));
        }
        let special = format!(
            "{} socket(s), FIFO(s) or device(s) not stored (seccs stores files, links and \
             directories): {named}",
            self.special.len()
        );
        Some(match own {
            Some(own) => format!("{own}; {special}"),
            None => special,
        })
    }
}

/// A name to restore, with the version it restores.
type Restored<'r> = (&'r Record, &'r Version);

/// A file restored under a temporary name, with the directory it is in
/// (held open until it is renamed into place).
type Written = (crate::output::Unplaced, std::sync::Arc<Reached>);

/// How many files a tree restore writes before it makes them durable, with
/// one `syncfs`, and puts them in place. It bounds the files held open
/// (with no names, until then) and the directories held open at once; a
/// few hundred already make the sync a small part of each file's cost.
const FILES_SYNCED_AT_ONCE: usize = 256;

/// Makes a group of written files durable with `sync`, given one directory
/// on each file system they are on (a restore passes
/// [`crate::output::sync_file_systems`]: one `syncfs` each), and renames
/// each into place; the results, in order. When the sync fails, none is put
/// in place (each temporary file is removed) and each says why.
fn put_group_in_place(
    written: Vec<(&str, Result<Option<Written>>)>,
    sync: impl FnOnce(Vec<&std::os::fd::OwnedFd>) -> std::io::Result<()>,
) -> Vec<(&str, Result<()>)> {
    let mut file_systems: HashMap<u64, &std::os::fd::OwnedFd> = HashMap::new();
    for (_, result) in &written {
        if let Ok(Some((_, dir))) = result {
            file_systems.entry(dir.device).or_insert(&dir.fd);
        }
    }
    let synced = sync(file_systems.into_values().collect()).map_err(|e| e.to_string());
    written
        .into_iter()
        .map(|(name, result)| {
            let placed = result.and_then(|written| match (written, &synced) {
                (None, _) => Ok(()),
                (Some((unplaced, _)), Ok(())) => unplaced.put_in_place(),
                (Some(_), Err(e)) => bail!(
                    "cannot write {}: its file system could not be synced, so it was not \
                     put in place: {e}",
                    shown_name(name, EntryKind::File)
                ),
            });
            (name, placed)
        })
        .collect()
}

/// Makes `target` a hard link to `first`, or when that cannot be (the first
/// failed to restore, the file system has no hard links or the file too
/// many) writes it on its own with `write`. What is at `target` stays
/// until one of them is in place: the link is made under a temporary name
/// beside it and renamed over it, as a written file is.
fn link_or_write(first: &Path, target: &Path, write: impl FnOnce() -> Result<()>) -> Result<()> {
    match link_over(first, target) {
        Ok(()) => Ok(()),
        Err(_) => write(),
    }
}

/// Replaces what is at `target` with a hard link to `first`, in one rename.
fn link_over(first: &Path, target: &Path) -> std::io::Result<()> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (tmp, _removed_on_interrupt) = crate::interrupt::hard_link_in(dir, first)?;
    let renamed = fs::rename(&tmp, target);
    // A failed rename leaves the temporary name; so does one over a name
    // of the same file already (a restore into its own earlier output),
    // which succeeds doing nothing.
    if renamed.is_err() || fs::symlink_metadata(&tmp).is_ok() {
        let _ = fs::remove_file(&tmp);
    }
    renamed
}

/// An entry a restore did not try, as the backend had failed for good.
#[derive(Debug)]
struct NotTried;

impl std::fmt::Display for NotTried {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not tried: the backend had failed")
    }
}

impl std::error::Error for NotTried {}

/// Splits the names to restore into those written (or made) on their own
/// and hard links: files put with more than one link each, from the same
/// device, with the same inode, change time and content were one file,
/// and each but the first (in name order) is paired with that first. An
/// inode number is unique only within one file system, and a put that
/// enters mount points can meet two file systems (two snapshots of one,
/// a bind mount) holding different files with the same inode, change
/// time and content: without the device they would come back as one
/// file, and an edit of one would change the other.
///
/// Versions written before catalog format 8 have no device or link count
/// ([`HardLinks`]); they are grouped as before, by inode, change time and
/// content, among themselves only: such a version is never linked with
/// one that has a device, since which device it was on is not known.
fn hard_link_groups(
    mut entries: Vec<Restored<'_>>,
) -> (Vec<Restored<'_>>, Vec<(Restored<'_>, &Record)>) {
    entries.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut first_of = HashMap::new();
    let (mut firsts, mut more) = (Vec::new(), Vec::new());
    for entry @ (record, version) in entries {
        // `Some(None)`: a version from before devices were recorded.
        let device = match version.hard_links {
            None => Some(None),
            Some(links) if links.nlink > 1 => Some(Some(links.device)),
            Some(_) => None,
        };
        let same_file = (version.kind == EntryKind::File)
            .then_some(version.stamp.as_ref().zip(device))
            .flatten()
            .map(|(s, device)| {
                let s = s.file_stamp();
                (device, s.inode, s.ctime_s, s.ctime_ns, &version.content_ref)
            });
        match same_file {
            Some(key) => match first_of.get(&key) {
                Some(&first) => more.push((entry, first)),
                None => {
                    first_of.insert(key, record);
                    firsts.push(entry);
                }
            },
            None => firsts.push(entry),
        }
    }
    (firsts, more)
}

/// A directory a restore writes in, reached from the output directory one
/// component at a time without following a symlink, and held open, so
/// that what the restore does there stays there even if the path is
/// changed meanwhile (a directory swapped for a symlink to elsewhere
/// between a check and a write).
struct Reached {
    fd: std::os::fd::OwnedFd,
    /// The file system it is on: a group of files is made durable with one
    /// `syncfs` per file system.
    device: u64,
    /// The directory as `/proc/self/fd/N`: the kernel resolves it to the
    /// directory held open, not to whatever its path names now. (Without
    /// `/proc` it is the plain path, checked as it is walked but not held.)
    held: PathBuf,
    /// `DIR/PARENTS`, for messages.
    shown: PathBuf,
}

/// Where a name is restored: its parent directory, held open, and the
/// name's path through it.
struct Place {
    parent: std::sync::Arc<Reached>,
    /// The entry, as `/proc/self/fd/N/NAME`.
    at: PathBuf,
    /// `DIR/NAME`, for messages.
    shown: PathBuf,
}

/// The places of names under one output directory. The directories
/// reached are kept (a few hundred at most), so that the files of one
/// directory, restored one after another, do not walk and open the same
/// path again each: that walk cost more than writing a small file.
struct Places<'d> {
    dir: &'d Path,
    reached: std::sync::Mutex<HashMap<String, std::sync::Arc<Reached>>>,
    /// Where under `dir` no name may land: the store's own directory.
    keep_out: Option<PathBuf>,
    /// The directories restored with recorded bits (their names as
    /// [`name_of`] gives them): made private (0700) while the restore runs,
    /// and given their bits at its end. Made with their own bits, or 0777
    /// less the umask as `mkdir` makes one, a 0700 directory would be open
    /// to all from its making to the restore's end (for good if it is
    /// interrupted) while its files are written into it.
    private_until_done: HashSet<String>,
}

/// Where `resolved`, a path resolved already, lies under `outer`,
/// resolved as it is on disk (links followed, `..` taken); `None` when it
/// does not, or `outer` cannot be resolved.
fn lies_under(outer: &Path, resolved: &Path) -> Option<PathBuf> {
    let outer = fs::canonicalize(outer).ok()?;
    resolved.strip_prefix(&outer).ok().map(Path::to_path_buf)
}

/// Whether the name `upper` is `name` or a directory above it.
fn is_above(upper: &str, name: &str) -> bool {
    upper.is_empty()
        || name
            .strip_prefix(upper)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// How many directories [`Places`] keeps open at once.
const DIRECTORIES_KEPT: usize = 256;

impl<'d> Places<'d> {
    fn new(dir: &'d Path) -> Self {
        Places {
            dir,
            reached: std::sync::Mutex::new(HashMap::new()),
            keep_out: None,
            private_until_done: HashSet::new(),
        }
    }

    /// The bits the directory `rel` (as [`name_of`] gives it) is made with.
    fn making_mode(&self, rel: &str) -> u32 {
        if self.private_until_done.contains(rel) {
            0o700
        } else {
            0o777
        }
    }

    /// The place of the name `name`, with the directories above it made
    /// when `make_parents`. Nothing is written through a symlink: not one
    /// that was in the output directory before, nor one this restore made
    /// (links come last, parents first), nor one swapped in while it runs,
    /// as tar guards its extractions.
    fn of(&self, name: &str, make_parents: bool) -> Result<Place> {
        let rel = name_of(Path::new(name));
        let (above, leaf) = match rel.rsplit_once('/') {
            Some((above, leaf)) => (above, leaf),
            None => ("", rel.as_str()),
        };
        if leaf.is_empty() {
            bail!("cannot restore the name {name:?}");
        }
        // No link under `dir` is followed, so where a name lands is `dir`
        // and its parts, as they are.
        if let Some(store) = &self.keep_out {
            let landing: PathBuf = rel.split('/').map(part_path).collect();
            if landing.starts_with(store) {
                bail!(
                    "cannot write {}: it is in the store's own directory; restore into a \
                     directory that does not hold the store",
                    shown_path(&self.dir.join(&landing))
                );
            }
        }
        let kept = self
            .reached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(above)
            .cloned();
        let parent = match kept {
            Some(parent) => parent,
            None => {
                let (target, passed) = self.reach(&rel, above, make_parents)?;
                let parent = std::sync::Arc::new(target);
                let mut reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
                // The directories passed on the way are held too, the
                // highest first: a restore that goes back up a tree deeper
                // than the number kept (the last pass sets directories'
                // bits the deepest first) then finds the next one's parent
                // held, instead of walking from the top for each.
                for (name, dir) in passed
                    .into_iter()
                    .map(|(name, dir)| (name, std::sync::Arc::new(dir)))
                    .chain(std::iter::once((above.to_owned(), parent.clone())))
                {
                    if reached.len() >= DIRECTORIES_KEPT {
                        // The directories above this one are kept, where
                        // new ones are reached from; of a tree deeper than
                        // the limit, those nearest the top go first.
                        reached.retain(|held, _| is_above(held, above));
                        if reached.len() >= DIRECTORIES_KEPT
                            && let Some(top) = reached.keys().min_by_key(|k| k.len()).cloned()
                        {
                            reached.remove(&top);
                        }
                    }
                    reached.insert(name, dir);
                }
                parent
            }
        };
        let leaf = part_path(leaf);
        Ok(Place {
            at: parent.held.join(&leaf),
            shown: parent.shown.join(&leaf),
            parent,
        })
    }

    /// The longest of `above`'s own ancestors (a prefix of it ending where
    /// a part ends) whose directory is held, and that directory.
    fn nearest_held<'a>(&self, above: &'a str) -> Option<(&'a str, std::sync::Arc<Reached>)> {
        let reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        if reached.is_empty() {
            return None;
        }
        let mut end = above.len();
        while let Some(cut) = above[..end].rfind('/') {
            let prefix = &above[..cut];
            if let Some(held) = reached.get(prefix) {
                return Some((prefix, held.clone()));
            }
            end = cut;
        }
        None
    }

    /// Opens the directory `above` (the name `rel`'s parents) under the
    /// output directory, making it when `make_parents`; with it, the
    /// directories it opened on the way (their names, the highest first),
    /// which were not held.
    fn reach(
        &self,
        rel: &str,
        above: &str,
        make_parents: bool,
    ) -> Result<(Reached, Vec<(String, Reached)>)> {
        use rustix::fs::{AtFlags, Mode, OFlags, mkdirat, openat, statat};
        let dir = self.dir;
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // From the nearest directory above already held, when there is
        // one: walking every part from the top for each new directory cost
        // a deep tree's restore a number of opens that grew with the
        // square of its depth. A held directory is the one walked to, as
        // the kernel resolves its descriptor: what goes below it goes into
        // it, as the names directly in it do.
        let from_held = self.nearest_held(above);
        // The directory walked from is passed like the others when it is
        // not held already (the output directory itself).
        let mut passed_from = from_held.is_none();
        let (mut parent, mut shown, mut reached, rest) = match from_held {
            Some((prefix, held)) => (
                openat(&held.fd, ".", flags, Mode::empty())
                    .with_context(|| format!("cannot open {}", shown_path(&held.shown)))?,
                held.shown.clone(),
                prefix.to_owned(),
                &above[prefix.len()..],
            ),
            None => {
                if make_parents {
                    fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", shown_path(dir)))?;
                }
                (
                    openat(rustix::fs::CWD, dir, flags, Mode::empty())
                        .with_context(|| format!("cannot open {}", shown_path(dir)))?,
                    dir.to_path_buf(),
                    String::new(),
                    above,
                )
            }
        };
        let mut passed = Vec::new();
        for name_part in rest.split('/').filter(|p| !p.is_empty()) {
            let name_before = reached.clone();
            let shown_before = shown.clone();
            if !reached.is_empty() {
                reached.push('/');
            }
            reached.push_str(name_part);
            // A name's parts are the file names' bytes again.
            let part = part_path(name_part);
            shown.push(&part);
            if make_parents {
                let mode = Mode::from_raw_mode(self.making_mode(&reached));
                match mkdirat(&parent, &part, mode) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => {
                        return Err(std::io::Error::from(e))
                            .with_context(|| format!("cannot create {}", shown_path(&shown)));
                    }
                }
            }
            match openat(&parent, &part, flags | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => {
                    let before = std::mem::replace(&mut parent, fd);
                    if passed_from {
                        passed.push((name_before, held_dir(before, shown_before)?));
                    }
                    passed_from = true;
                }
                Err(e) => {
                    let is_link =
                        statat(&parent, &part, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink()
                        });
                    if is_link {
                        bail!(
                            "refusing to restore {}: {} is a symlink, and writing through it \
                             could leave {}",
                            shown_name(rel, EntryKind::File),
                            shown_path(&shown),
                            shown_path(dir)
                        );
                    }
                    if e == rustix::io::Errno::NOTDIR {
                        bail!(
                            "cannot restore {}: {} is in the way, and is not a directory",
                            shown_name(rel, EntryKind::File),
                            shown_path(&shown)
                        );
                    }
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("cannot open {}", shown_path(&shown)));
                }
            }
        }
        Ok((held_dir(parent, shown)?, passed))
    }
}

/// A directory opened as `fd`, shown as `shown`, as [`Places`] holds it.
fn held_dir(fd: std::os::fd::OwnedFd, shown: PathBuf) -> Result<Reached> {
    let device = rustix::fs::fstat(&fd)
        .with_context(|| format!("cannot open {}", shown_path(&shown)))?
        .st_dev;
    let held = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    ));
    let held = if held.is_dir() { held } else { shown.clone() };
    Ok(Reached {
        fd,
        device,
        held,
        shown,
    })
}

/// The place of the name `name` under `dir` (see [`Places::of`]), reached
/// afresh.
#[cfg(test)]
fn place_of(dir: &Path, name: &str, make_parents: bool) -> Result<Place> {
    Places::new(dir).of(name, make_parents)
}

/// Replaces a symlink in the output directory where the directory `name`
/// goes by that directory, as a restore replaces a link where a file goes.
/// Anything else there, or a failure, is left for the restore to meet and
/// report.
fn replace_a_link_where_a_directory_goes(places: &Places<'_>, name: &str) {
    if let Ok(place) = places.of(name, true)
        && fs::symlink_metadata(&place.at).is_ok_and(|m| m.file_type().is_symlink())
        && fs::remove_file(&place.at).is_ok()
    {
        // Made as the restore makes it (private while its entries are
        // written when the directory's bits are not to be widened yet).
        let _ = fs::DirBuilder::new()
            .mode(places.making_mode(&name_of(Path::new(name))))
            .create(&place.at);
    }
}

/// Creates the symlink at `place` to `link` (a target's bytes, as `put`
/// read them: any bytes but NUL on Unix) with the time of `attrs`: made
/// beside it and renamed into place, so that what was there goes only
/// once the link is whole (it was removed first, and lost when the link
/// could not be made). `dir_in_the_way` is whether the caller found a
/// directory there, as for [`crate::output::write_restored`].
#[cfg(unix)]
fn restore_link(place: &Place, dir_in_the_way: bool, link: &[u8], attrs: &FileAttrs) -> Result<()> {
    // Said as a file restored there says it, not as the rename would.
    if dir_in_the_way {
        bail!(
            "cannot create link {}: it is a directory",
            shown_path(&place.shown)
        )
    }
    crate::output::place_link(&place.at, &place.shown, link, attrs)
}

#[cfg(not(unix))]
fn restore_link(place: &Place, _dir: bool, _link: &[u8], _attrs: &FileAttrs) -> Result<()> {
    bail!(
        "cannot create symlink {} on this platform",
        shown_path(&place.shown)
    )
}

/// The names of `records` that are not gone already.
fn live_names(records: &HashMap<String, Record>) -> impl Iterator<Item = &str> {
    records
        .values()
        .filter(|r| !r.is_gone())
        .map(|r| r.name.as_str())
}

/// Marks gone the names under `root/` that the walk did not find; returns
/// how many. `known` is what the catalog held under `root/` before the put.
/// A directory named without a prefix (`.`, `/`) holds every name in the
/// store, so nothing is marked for it.
fn mark_missing_gone(
    store: &Store,
    root: &str,
    known: Result<HashMap<String, Record>>,
    present: &HashSet<String>,
    unlisted: &[String],
) -> Result<usize> {
    if root.is_empty() {
        return Ok(0);
    }
    let known = known.context("names missing from the directory are not marked gone")?;
    let missing = missing_names(live_names(&known), present, unlisted);
    store.mark_gone(&missing).with_context(|| {
        format!(
            "cannot mark the names missing from {} gone",
            shown_name(root, EntryKind::Directory)
        )
    })
}

/// How `seccs get PREFIX/ -o DIR` runs.
pub struct TreeGet<'a> {
    /// What the tree held at this time (seconds since the epoch); `None`:
    /// as it was last put.
    pub at: Option<u64>,
    /// Names to leave out.
    pub exclude: &'a Excludes,
    /// Whose the restored files are.
    pub ownership: Ownership,
    /// Draw a progress bar.
    pub progress: bool,
    /// The store's own directory, resolved (links followed), which no
    /// name restored may land in (a tree restored into a directory above
    /// it, with names under its name, would write over the store's key or
    /// database).
    pub store_dir: Option<&'a Path>,
}

/// Restores every name under `prefix` into `dir` (as `tar -x -C DIR` would).
pub fn get_tree(store: &Store, prefix: &str, dir: &Path, how: &TreeGet<'_>) -> Result<()> {
    let TreeGet {
        at,
        exclude,
        ownership,
        progress,
        store_dir,
    } = *how;
    // A restore holds a group of files and its directories open beside
    // the store's own files: a soft limit of 1,024, common, would leave
    // the store little. Where it cannot be raised, a restore that runs out
    // says so file by file.
    crate::harden::raise_open_file_limit(65_536);
    if let Ok(meta) = fs::metadata(dir)
        && !meta.is_dir()
    {
        bail!(
            "cannot restore into {}: it is not a directory",
            shown_path(dir)
        );
    }
    let listing = store.list_readable(prefix)?;
    let damage = listing.damage();
    let all = listing.records;
    // The directory the prefix names, when `put` recorded it (a put of its
    // parent did): it gets its bits and time once what is under it is
    // written, and an empty one is all there is to restore.
    let (top, top_error) = match directory_named_by(store, prefix) {
        Ok(record) => (record, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let mut top = top
        .as_ref()
        .and_then(|r| Some((r, version_to_restore(r, at)?)));
    if all.is_empty() && damage.is_none() && top.is_none() {
        bail!("no names start with {prefix:?}");
    }
    let listed = all.len();
    // Each name with the version it restores, chosen once, unless it or a
    // directory above it is excluded.
    let chosen: Vec<(&Record, &Version)> = all
        .iter()
        .filter_map(|r| Some((r, version_to_restore(r, at)?)))
        .collect();
    let there = chosen.len();
    let mut records: Vec<(&Record, &Version)> = chosen
        .into_iter()
        .filter(|(r, v)| !exclude.excludes_path(&r.name, v.kind == EntryKind::Directory))
        .collect();
    // An empty directory: made, like any directory restored, and given
    // its bits and time with the others below.
    if all.is_empty()
        && let Some(empty) = top.take()
    {
        records.push(empty);
    }
    if records.is_empty() {
        if let Some(e) = damage {
            return Err(e.into());
        }
        if there > 0 {
            bail!("--exclude leaves out all {there} names under {prefix:?}");
        }
        // The prefix as a command line types it.
        let typed_prefix = typed(&shown_name(prefix, EntryKind::File));
        match at {
            None => bail!(
                "every name under {prefix:?} is gone ({listed}; the last put of their \
                 directory did not find them): `seccs ls --all {typed_prefix}` lists their \
                 versions"
            ),
            Some(t) => bail!(
                "none of the {listed} names under {prefix:?} was there at {}: \
                 `seccs ls --all {typed_prefix}` lists their versions and times",
                crate::store::format_time(t)
            ),
        }
    }
    // Made first: a directory that cannot be made is one error, not one
    // per entry restored under it.
    fs::create_dir_all(dir).with_context(|| format!("cannot restore into {}", shown_path(dir)))?;
    let total = records.iter().map(|(_, v)| v.content_ref.len()).sum();
    let bar = crate::progress::bytes(total, !progress);
    let mut places = Places::new(dir);
    places.keep_out = store_dir.and_then(|store| lies_under(dir, store));
    places.private_until_done = records
        .iter()
        .chain(&top)
        .filter(|(_, v)| v.kind == EntryKind::Directory && v.mode.is_some())
        .map(|(r, _)| name_of(Path::new(&r.name)))
        .collect();
    // A file is written under a temporary name and renamed into place
    // once durable: with `Durability::ByCaller`, the caller syncs its file
    // system first (see `put_group_in_place`).
    let restore_entry =
        |(record, version): Restored<'_>, durability: Durability| -> Result<Option<Written>> {
            let place = places.of(&record.name, true)?;
            let (target, shown) = (&place.at, &place.shown);
            // What is in the way goes, as tar does it: a symlink (writing
            // through it could leave `dir`), and for a file also a FIFO, socket
            // or device (writing to it would block, or reach a disk).
            let found_meta = fs::symlink_metadata(target).ok();
            if let Some(meta) = &found_meta {
                let found = meta.file_type();
                let in_the_way = match version.kind {
                    EntryKind::File => !found.is_file() && !found.is_dir(),
                    EntryKind::Directory => found.is_symlink(),
                    // `restore_link` renames over whatever is there but
                    // a directory.
                    EntryKind::Symlink => false,
                };
                if in_the_way {
                    fs::remove_file(target)
                        .with_context(|| format!("cannot replace {}", shown_path(shown)))?;
                }
            }
            // Only a directory stays in the way of a file or a link now.
            let dir_in_the_way = found_meta.as_ref().is_some_and(fs::Metadata::is_dir);
            match version.kind {
                EntryKind::File => {
                    let attrs = attrs_of(version, ownership);
                    let unplaced = crate::output::write_restored(
                        target,
                        shown,
                        dir_in_the_way,
                        &attrs,
                        durability,
                        |out| {
                            crate::output::read_into(out, &shown_path(shown), &record.name, |out| {
                                // As a version, so that one removed while it is
                                // read is said as that, not as damage.
                                store.get_version_range(
                                    &record.name,
                                    version,
                                    0,
                                    version.content_ref.len(),
                                    &mut bar.wrap_write(out),
                                )
                            })
                        },
                    )?;
                    match durability {
                        Durability::Now => unplaced.put_in_place().map(|()| None),
                        Durability::ByCaller => Ok(Some((unplaced, place.parent))),
                    }
                }
                EntryKind::Symlink => {
                    let mut link = Vec::new();
                    store
                        .get_version_range(
                            &record.name,
                            version,
                            0,
                            version.content_ref.len(),
                            &mut link,
                        )
                        .with_context(|| {
                            format!("cannot read {}", shown_name(&record.name, EntryKind::File))
                        })?;
                    let attrs = attrs_of(version, ownership);
                    restore_link(&place, dir_in_the_way, &link, &attrs).map(|()| None)
                }
                EntryKind::Directory => match fs::DirBuilder::new()
                    .mode(places.making_mode(&name_of(Path::new(&record.name))))
                    .create(target)
                {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        if target.is_dir() {
                            Ok(None)
                        } else {
                            bail!(
                                "cannot create {}: something that is not a directory is in the way",
                                shown_path(shown)
                            )
                        }
                    }
                    made => made
                        .map(|()| None)
                        .with_context(|| format!("cannot create {}", shown_path(shown))),
                },
            }
        };
    // The restore stops at the backend's first failure and says it once,
    // as a put does, rather than once per entry left.
    let backend_failed = FirstBackendFailure::default();
    let restore_one_as = |entry: Restored<'_>, durability: Durability| -> Result<Option<Written>> {
        backend_failed
            .run(|| restore_entry(entry, durability))
            .unwrap_or_else(|| Err(NotTried.into()))
    };
    let restore_one =
        |entry: Restored<'_>| -> Result<()> { restore_one_as(entry, Durability::Now).map(|_| ()) };
    let (mut links, others): (Vec<_>, Vec<_>) = records
        .iter()
        .copied()
        .partition(|(_, v)| v.kind == EntryKind::Symlink);
    links.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    // Directories first, one at a time, parents before what is under them
    // (a name sorts before the names it is a prefix of): a link in OUT
    // where one goes is replaced before anything is restored below it,
    // which would otherwise be refused as a name below a link. The
    // directory the prefix names, not restored as an entry, likewise.
    let (mut directories, others): (Vec<_>, Vec<_>) = others
        .into_iter()
        .partition(|(_, v)| v.kind == EntryKind::Directory);
    directories.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    if let Some((record, _)) = top {
        replace_a_link_where_a_directory_goes(&places, &record.name);
    }
    let mut restored_firsts: Vec<(&str, Result<()>)> = directories
        .into_iter()
        .map(|entry| (entry.0.name.as_str(), restore_one(entry)))
        .collect();
    let (firsts, more_links) = hard_link_groups(others);
    // Files are written on all cores, a group at a time: the group is made
    // durable with one `syncfs` and then renamed into place, rather than
    // one `fsync` a file, which cost most of the time of a restore of many
    // small files.
    for group in firsts.chunks(FILES_SYNCED_AT_ONCE) {
        let written: Vec<(&str, Result<Option<Written>>)> = group
            .par_iter()
            .map(|&entry| {
                (
                    entry.0.name.as_str(),
                    restore_one_as(entry, Durability::ByCaller),
                )
            })
            .collect();
        restored_firsts.extend(put_group_in_place(written, |dirs| {
            crate::output::sync_file_systems(dirs)
        }));
    }
    let written: HashSet<&str> = restored_firsts
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(name, _)| *name)
        .collect();
    // A directory that could not be made is reported once, not again when
    // its bits and time are set.
    let not_made: HashSet<&str> = restored_firsts
        .iter()
        .filter(|(_, r)| r.is_err())
        .map(|(name, _)| *name)
        .collect();
    let mut results: Vec<Result<()>> = restored_firsts.into_iter().map(|(_, r)| r).collect();
    // Names that were one file are one file again: linked to the first,
    // or written on their own when that cannot be. Only a first that this
    // restore wrote is linked to (its path was checked for links above it,
    // and links come last): whatever else is at its path could be outside
    // `dir`.
    results.extend(more_links.into_iter().map(|(entry, first)| {
        if !written.contains(first.name.as_str()) {
            return restore_one(entry);
        }
        let target = places.of(&entry.0.name, true)?;
        let first = places.of(&first.name, false)?;
        link_or_write(&first.at, &target.at, || restore_one(entry))
    }));
    // In name order (a parent's link before anything under it), one at a
    // time, so that each sees the links before it.
    results.extend(links.into_iter().map(restore_one));
    bar.finish_and_clear();
    // Directories get their bits and times once everything under them is
    // written (a write would move the time; a read-only bit would stop
    // it), the deepest first; the directory the prefix names too.
    let mut dirs: Vec<(String, PathBuf, FileAttrs)> = records
        .iter()
        .copied()
        .chain(top)
        .filter(|(r, v)| v.kind == EntryKind::Directory && !not_made.contains(r.name.as_str()))
        .map(|(r, v)| {
            let rel = name_of(Path::new(&r.name));
            let path = dir.join(&rel);
            (rel, path, attrs_of(v, ownership))
        })
        .collect();
    dirs.sort_by_key(|(_, path, _)| std::cmp::Reverse(path.components().count()));
    // Each is checked again here, after the links were made: a directory
    // whose restore failed may have a file or a link in its place now, and
    // a link made since may sit above it.
    // A restore that stopped early did not make every directory: one it
    // did not get to is no problem of its own (the run again makes it).
    let stopped = backend_failed.failed();
    let dir_results = dirs.iter().map(|(rel, _, attrs)| {
        let place = places.of(rel, false)?;
        let (at, path) = (&place.at, &place.shown);
        match fs::symlink_metadata(at) {
            Ok(meta) if meta.is_dir() => {}
            Err(e) if stopped && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Ok(_) => bail!(
                "not setting the mode or time of {}: it is not a directory",
                shown_path(path)
            ),
            Err(e) => bail!("cannot set the mode or time of {}: {e}", shown_path(path)),
        }
        attrs
            .apply_to_dir(at)
            .with_context(|| format!("cannot set the mode or time of {}", shown_path(path)))
    });
    let not_tried = results
        .iter()
        .filter(|r| r.as_ref().is_err_and(|e| e.is::<NotTried>()))
        .count();
    let failures: Vec<String> = results
        .into_iter()
        .chain(dir_results)
        .filter_map(|r| r.err().filter(|e| !e.is::<NotTried>()))
        .map(|e| format!("{e:#}"))
        .chain(damage.map(|e| e.to_string()))
        .chain(top_error)
        .collect();
    say_once_each(&failures);
    if let Some(e) = backend_failed.into_inner() {
        let stopped = format!(
            "the restore stopped there, {not_tried} of {} entries not restored: what was \
             restored stays, and the same get run again restores the rest",
            records.len()
        );
        if let Some(full) = output_no_room(&e, dir).or_else(|| backend_no_room(&e)) {
            bail!("{full}; {stopped}");
        }
        return Err(e.context(format!(
            "restore stopped at the backend's first failure, {not_tried} of {} entries not \
             restored; what was restored stays, and the same get run again restores the rest",
            records.len()
        )));
    }
    if let Some(note) = unprivileged_note(records.iter().map(|(_, v)| *v)) {
        errln!("seccs: {note}");
    }
    if !failures.is_empty() {
        problems!(
            "{} problem(s) while restoring {} entries under {prefix:?} (each named above)",
            failures.len(),
            records.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory below one already held is reached from it, and lands
    /// where a walk from the top would; beyond the number kept, the
    /// directories above the one reached stay held.
    #[test]
    fn a_deeper_directory_is_reached_from_the_nearest_held_above_it() -> Result<()> {
        assert!(is_above("", "a") && is_above("a", "a") && is_above("a", "a/b"));
        assert!(!is_above("a", "ab") && !is_above("a/b", "a") && !is_above("b", "a/b"));
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let places = Places::new(&out);
        places.of("t/a/f", true)?;
        let deep = places.of("t/a/b/c/f", true)?;
        assert_eq!(deep.shown, out.join("t/a/b/c/f"));
        assert!(out.join("t/a/b/c").is_dir());
        fs::write(&deep.at, b"x")?;
        assert_eq!(fs::read(out.join("t/a/b/c/f"))?, b"x");
        let mut name = String::from("t");
        for _ in 0..DIRECTORIES_KEPT + 10 {
            name.push_str("/d");
            places.of(&format!("{name}/f"), true)?;
        }
        let held = places.reached.lock().unwrap_or_else(|p| p.into_inner());
        assert!(held.len() <= DIRECTORIES_KEPT);
        assert!(held.keys().all(|k| is_above(k, &name)), "only those above");
        assert!(
            held.contains_key(&name[..name.len() - 2]),
            "the nearest kept"
        );
        Ok(())
    }

    /// A directory reached by a walk from the top holds the directories
    /// passed on the way too, so that going back up a tree deeper than the
    /// number kept (the deepest first, as a restore's last pass sets
    /// directories' bits) walks from the top once per that number of
    /// directories, not once per directory.
    #[test]
    fn going_up_a_deep_tree_finds_the_next_parent_held() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let depth = DIRECTORIES_KEPT * 2;
        let names: Vec<String> = (1..=depth).map(|d| vec!["d"; d].join("/")).collect();
        Places::new(&out).of(&format!("{}/f", names[depth - 1]), true)?;
        let places = Places::new(&out);
        let mut walks_from_the_top = 0;
        for name in names.iter().rev() {
            let above = name.rsplit_once('/').map_or("", |(above, _)| above);
            let held = places
                .reached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(above);
            if !held && places.nearest_held(above).is_none() {
                walks_from_the_top += 1;
            }
            let place = places.of(name, false)?;
            assert_eq!(place.shown, out.join(name));
            assert!(fs::symlink_metadata(&place.at)?.is_dir(), "{name}");
        }
        assert!(
            walks_from_the_top <= 3,
            "{walks_from_the_top} walks from the top for {depth} directories"
        );
        let held = places.reached.lock().unwrap_or_else(|p| p.into_inner());
        assert!(held.len() <= DIRECTORIES_KEPT);
        Ok(())
    }

    /// What a restore writes at a place goes into the directory the place
    /// was reached in, even when that directory is swapped for a link to
    /// elsewhere before the write (a race another user of the output
    /// directory could run); a place reached after the swap is refused.
    #[test]
    fn a_place_stays_in_the_directory_it_was_reached_in() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside)?;
        let place = place_of(&out, "tree/d/f", true)?;
        let dir_place = place_of(&out, "tree/d/sub", true)?;
        assert_eq!(place.shown, out.join("tree/d/f"));
        fs::rename(out.join("tree/d"), out.join("tree/d.moved"))?;
        std::os::unix::fs::symlink(&outside, out.join("tree/d"))?;
        crate::output::write_restored(
            &place.at,
            &place.shown,
            false,
            &FileAttrs::default(),
            Durability::Now,
            |w| Ok(w.write_all(b"restored")?),
        )?
        .put_in_place()?;
        fs::create_dir(&dir_place.at)?;
        assert_eq!(fs::read(out.join("tree/d.moved/f"))?, b"restored");
        assert!(out.join("tree/d.moved/sub").is_dir());
        assert_eq!(
            fs::read_dir(&outside)?.count(),
            0,
            "nothing written outside"
        );
        let err = place_of(&out, "tree/d/g", true)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("tree/d is a symlink")),
            "{err:?}"
        );
        Ok(())
    }

    /// A group of files is renamed into place only once its file system
    /// is synced: when the sync fails, no file of the group appears under
    /// its own name, none is left under its temporary name, and each says
    /// why; a group that is synced, with one sync for its one file system,
    /// is put in place whole.
    #[test]
    fn a_group_whose_sync_fails_is_not_put_in_place() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let out = tmp.path().join("out");
        let places = Places::new(&out);
        let names = ["tree/a", "tree/d/b", "tree/d/e/c"];
        let write_group = || -> Vec<(&str, Result<Option<Written>>)> {
            names
                .iter()
                .map(|&name| {
                    let written = places.of(name, true).and_then(|place| {
                        let unplaced = crate::output::write_restored(
                            &place.at,
                            &place.shown,
                            false,
                            &FileAttrs::default(),
                            Durability::ByCaller,
                            |w| Ok(w.write_all(name.as_bytes())?),
                        )?;
                        Ok(Some((unplaced, place.parent)))
                    });
                    (name, written)
                })
                .collect()
        };
        let failed = put_group_in_place(write_group(), |_| {
            Err(std::io::Error::other("the device went away"))
        });
        assert_eq!(failed.len(), names.len());
        for (name, result) in &failed {
            let err = result
                .as_ref()
                .err()
                .map(|e| format!("{e:#}"))
                .with_context(|| format!("{name} was put in place"))?;
            assert!(err.contains("could not be synced"), "{err}");
            assert!(err.contains("the device went away"), "{err}");
        }
        let mut left = Vec::new();
        let mut dirs = vec![out.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                match entry.file_type()?.is_dir() {
                    true => dirs.push(entry.path()),
                    false => left.push(entry.path()),
                }
            }
        }
        assert!(left.is_empty(), "files left behind: {left:?}");

        let mut syncs = 0;
        let placed = put_group_in_place(write_group(), |dirs| {
            syncs += dirs.len();
            crate::output::sync_file_systems(dirs)
        });
        assert_eq!(syncs, 1, "one sync for the one file system");
        for (name, result) in placed {
            result?;
            assert_eq!(fs::read(out.join(name))?, name.as_bytes());
        }
        Ok(())
    }

    /// The directory `dir` held open, as a put holds the one it puts.
    fn held(dir: &Path) -> Result<OwnedFd> {
        Ok(rustix::fs::open(
            dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )?)
    }

    fn seen_at(path: &Path) -> Result<Seen> {
        Ok(Seen::from(&fs::symlink_metadata(path)?))
    }

    #[test]
    fn a_file_replaced_by_a_symlink_or_a_fifo_is_not_followed_or_waited_on() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let top = held(tmp.path())?;
        let secret = tmp.path().join("secret");
        fs::write(&secret, b"outside the tree")?;
        let seen = seen_at(&secret)?;
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&secret, &link)?;
        let err = format!(
            "{:#}",
            open_regular(&top, Path::new("link"), &link, &seen)
                .err()
                .context("a link was opened")?
        );
        assert!(err.contains("was replaced while the put ran"), "{err}");
        // Opening a FIFO for reading would wait for a writer for good.
        let fifo = tmp.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        assert!(made.success());
        let err = format!(
            "{:#}",
            open_regular(&top, Path::new("fifo"), &fifo, &seen)
                .err()
                .context("a FIFO was opened")?
        );
        assert!(err.contains("no longer a regular file"), "{err}");
        let mut read = String::new();
        std::io::Read::read_to_string(
            &mut open_regular(&top, Path::new("secret"), &secret, &seen)?,
            &mut read,
        )?;
        assert_eq!(read, "outside the tree");
        Ok(())
    }

    #[test]
    fn a_file_under_a_directory_swapped_for_a_link_or_for_another_file_is_not_read() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let tree = tmp.path().join("tree");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(tree.join("d"))?;
        fs::create_dir(&outside)?;
        fs::write(tree.join("d/f"), b"inside")?;
        fs::write(outside.join("f"), b"SECRET")?;
        let top = held(&tree)?;
        let seen = seen_at(&tree.join("d/f"))?;
        // As a walk found it, then the directory swapped for a link out.
        fs::rename(tree.join("d"), tree.join("was-d"))?;
        std::os::unix::fs::symlink("../outside", tree.join("d"))?;
        let err = format!(
            "{:#}",
            open_regular(&top, Path::new("d/f"), &tree.join("d/f"), &seen)
                .err()
                .context("a file was read through a link")?
        );
        assert!(
            err.contains("was replaced while the put ran; not stored"),
            "{err}"
        );
        // Reached one directory at a time, as where there is no openat2.
        let err = open_beneath(&top, Path::new("d/f"), rustix::fs::OFlags::RDONLY).err();
        assert!(err.is_some(), "the link was followed");
        // Another file where it was: a directory renamed within the tree.
        fs::remove_file(tree.join("d"))?;
        fs::create_dir(tree.join("d"))?;
        fs::write(tree.join("d/f"), b"another")?;
        let err = format!(
            "{:#}",
            open_regular(&top, Path::new("d/f"), &tree.join("d/f"), &seen)
                .err()
                .context("another file was read")?
        );
        assert!(err.contains("was replaced while the put ran"), "{err}");
        Ok(())
    }

    #[test]
    fn a_walk_never_leaves_the_tree_through_a_directory_swapped_for_a_link() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let tree = tmp.path().join("tree");
        let outside = tmp.path().join("outside");
        fs::create_dir_all(tree.join("d"))?;
        fs::create_dir(&outside)?;
        fs::write(outside.join("secret"), b"SECRET")?;
        std::os::unix::fs::symlink("secret", outside.join("link"))?;
        let top = held(&tree)?;
        let d = held(&tree.join("d"))?;
        // The walk holds `d`; the name is swapped for a link out.
        fs::rename(tree.join("d"), tree.join("was-d"))?;
        std::os::unix::fs::symlink("../outside", tree.join("d"))?;
        let exclude = Excludes::default();
        let scope = Scope {
            exclude: &exclude,
            device: None,
            store_dir: None,
        };
        let mut w = Walk::default();
        walk(&d, &tree.join("d"), Path::new("d"), &scope, &mut w);
        assert!(w.found.is_empty() && w.problems.is_empty());
        // The walk of the top meets `d` as the link it now is.
        let mut w = Walk::default();
        walk(&top, &tree, Path::new(""), &scope, &mut w);
        let kinds: Vec<_> = w.found.iter().map(|f| f.identity().1).collect();
        assert_eq!(kinds, [EntryKind::Symlink, EntryKind::Directory]);
        // And a directory swapped between its stat and its open is refused.
        let seen = seen_at(&tree.join("was-d"))?;
        fs::rename(tree.join("was-d"), tree.join("moved"))?;
        fs::create_dir(tree.join("was-d"))?;
        let problem = open_dir_at(&top, OsStr::new("was-d"), &seen, &tree.join("was-d"))
            .err()
            .context("another directory was entered")?;
        assert!(problem.contains("replaced while the put ran"), "{problem}");
        let problem = open_dir_at(&top, OsStr::new("d"), &seen, &tree.join("d"))
            .err()
            .context("a link was entered")?;
        assert!(problem.contains("replaced while the put ran"), "{problem}");
        Ok(())
    }

    #[test]
    fn an_entry_whose_attributes_cannot_be_read_is_stored_and_read_again_next_time() {
        let stamp = FileStamp {
            mtime_s: 1,
            mtime_ns: 2,
            ctime_s: 3,
            ctime_ns: 4,
            inode: 5,
        };
        let meta = FileMeta {
            stamp: Some(Stamp::Settled(stamp)),
            mode: Some(FileMode::from_st_mode(0o644)),
            ..FileMeta::default()
        };
        let path = Path::new("tree/f");
        let x = seccs_store::catalog::Xattr::new(b"user.a".to_vec(), b"1".to_vec()).expect("xattr");
        let read = with_xattrs(meta.clone(), Ok(vec![x.clone()]), path);
        assert_eq!(read.meta.xattrs, [x]);
        assert_eq!(read.meta.stamp, Some(Stamp::Settled(stamp)));
        assert!(read.report.is_none());
        let failed = with_xattrs(meta.clone(), Err(std::io::Error::other("EIO")), path);
        assert!(failed.meta.xattrs.is_empty());
        assert_eq!(failed.meta.stamp, Some(Stamp::Recent(stamp)));
        assert_eq!(failed.meta.mode, meta.mode);
        let report = failed.report.expect("a report");
        assert!(
            report.contains("tree/f") && report.contains("EIO") && report.contains("tries again"),
            "{report}"
        );
    }

    #[test]
    fn a_hard_link_that_cannot_be_made_is_written_on_its_own() -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let (first, second, third) = (
            dir.path().join("first"),
            dir.path().join("second"),
            dir.path().join("third"),
        );
        fs::write(&first, b"one file")?;
        // Linked when the first is there, replacing what was in the way;
        // `write` is not called.
        fs::write(&second, b"in the way")?;
        link_or_write(&first, &second, || bail!("written, not linked"))?;
        assert_eq!(fs::metadata(&second)?.ino(), fs::metadata(&first)?.ino());
        // Written when the link cannot be made (here: no first).
        let missing = dir.path().join("failed-to-restore");
        link_or_write(&missing, &third, || Ok(fs::write(&third, b"one file")?))?;
        assert_eq!(fs::read(&third)?, b"one file");
        assert_eq!(fs::metadata(&third)?.nlink(), 1);
        // A failed write is the name's error.
        let err = link_or_write(&missing, &dir.path().join("fourth"), || bail!("no content"));
        assert!(err.is_err_and(|e| e.to_string() == "no content"));
        Ok(())
    }

    #[test]
    fn a_link_where_a_private_directory_goes_is_replaced_by_a_private_one() -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere)?;
        let out = dir.path().join("out");
        fs::create_dir(&out)?;
        std::os::unix::fs::symlink(&elsewhere, out.join("top"))?;
        let mut places = Places::new(&out);
        places.private_until_done = HashSet::from(["top".to_owned()]);
        replace_a_link_where_a_directory_goes(&places, "top");
        let made = fs::symlink_metadata(out.join("top"))?;
        assert!(made.is_dir());
        assert_eq!(made.permissions().mode() & 0o777, 0o700);
        Ok(())
    }

    #[test]
    fn a_hard_link_that_cannot_be_made_nor_written_leaves_the_file_there() -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let (first, target) = (dir.path().join("first"), dir.path().join("target"));
        fs::write(&target, b"the user's")?;
        let missing = dir.path().join("failed-to-restore");
        let err = link_or_write(&missing, &target, || bail!("no content"));
        assert!(err.is_err_and(|e| e.to_string() == "no content"));
        assert_eq!(fs::read(&target)?, b"the user's");
        // Linked again over a link to the same file: one name each, and no
        // temporary one left.
        fs::write(&first, b"one file")?;
        link_or_write(&first, &target, || bail!("written, not linked"))?;
        link_or_write(&first, &target, || bail!("written, not linked"))?;
        assert_eq!(fs::metadata(&target)?.ino(), fs::metadata(&first)?.ino());
        assert_eq!(fs::metadata(&first)?.nlink(), 2);
        assert_eq!(fs::read_dir(dir.path())?.count(), 2);
        Ok(())
    }

    #[test]
    fn a_shown_name_is_typed_back_in_shell_quoting_when_it_needs_it() {
        assert_eq!(typed("photos/2024/"), "photos/2024/");
        assert_eq!(
            typed(&shown_name("caf\u{EFE9}/", EntryKind::File)),
            "$'caf\\xe9/'"
        );
        assert_eq!(typed("it's here"), "$'it\\'s here'");
        assert_eq!(
            typed(&shown_name("a\u{200b}b", EntryKind::File)),
            "$'a\\u200bb'"
        );
    }

    #[test]
    fn names_are_normalized_like_tar() {
        assert_eq!(name_of(Path::new("photos/2024/a.jpg")), "photos/2024/a.jpg");
        assert_eq!(name_of(Path::new("./photos/a")), "photos/a");
        assert_eq!(name_of(Path::new("/abs/dir/f")), "abs/dir/f");
        assert_eq!(name_of(Path::new("../up/f")), "up/f");
        assert_eq!(name_of(Path::new("a/./b//c")), "a/b/c");
    }

    #[test]
    fn names_not_found_are_missing_unless_under_a_directory_that_could_not_be_listed() {
        let present: HashSet<String> = ["t/a", "t/pipe"].iter().map(|s| s.to_string()).collect();
        let listed = [
            "t/a",
            "t/b",
            "t/pipe",
            "t/locked/x",
            "t/locked2",
            "t/lockedx/y",
        ];
        let unlisted = vec!["t/locked".to_string()];
        assert_eq!(
            missing_names(listed, &present, &unlisted),
            ["t/b", "t/locked2", "t/lockedx/y"]
        );
        // The root itself could not be listed: nothing is missing.
        assert!(missing_names(listed, &present, &["t".to_string()]).is_empty());
        assert!(missing_names(listed, &present, &[String::new()]).is_empty());
    }

    fn changed_at(secs: i64, nanos: u32) -> FileStamp {
        FileStamp {
            mtime_s: secs,
            mtime_ns: nanos,
            ctime_s: secs,
            ctime_ns: nanos,
            inode: 1,
        }
    }

    #[test]
    fn a_stamp_counts_only_once_its_change_time_lies_a_tick_before_the_put() {
        let start = Duration::new(1_000, 500_000_000);
        assert!(stamp_is_settled(&changed_at(1_000, 300_000_000), start));
        assert!(!stamp_is_settled(&changed_at(1_000, 450_000_000), start));
        assert!(!stamp_is_settled(&changed_at(1_001, 1), start));
        // Whole seconds: maybe a coarse file system, so wait three seconds.
        assert!(!stamp_is_settled(&changed_at(998, 0), start));
        assert!(stamp_is_settled(&changed_at(997, 0), start));
        // A change time before 1970 is not trusted at all.
        assert!(!stamp_is_settled(&changed_at(-5, 1), start));
    }

    /// A file version put from inode 7 changed at 100.5 s with `content`,
    /// with `hard_links` (`None`: as catalog formats before 8 recorded it).
    fn put_file(name: &str, content: u8, hard_links: Option<HardLinks>) -> Record {
        let stamp = FileStamp {
            mtime_s: 100,
            mtime_ns: 5,
            ctime_s: 100,
            ctime_ns: 500_000_000,
            inode: 7,
        };
        Record {
            name: name.to_owned(),
            next_version: 2,
            versions: vec![Version {
                number: 1,
                content_ref: seccs_store::ContentRef::from_bytes(
                    &[[content; 16].as_slice(), &3u64.to_be_bytes()].concat(),
                )
                .expect("16-byte digest and a length"),
                time: 200,
                kind: EntryKind::File,
                stamp: Some(Stamp::Settled(stamp)),
                mode: None,
                owner: None,
                xattrs: Vec::new(),
                hard_links,
            }],
            gone_since: None,
            absences: Vec::new(),
        }
    }

    /// What `hard_link_groups` makes of `records`: each name linked to
    /// another, with the name it is linked to.
    fn linked(records: &[Record]) -> Vec<(String, String)> {
        let entries = records
            .iter()
            .map(|r| (r, r.latest().expect("a version")))
            .collect();
        let (firsts, more) = hard_link_groups(entries);
        assert_eq!(firsts.len() + more.len(), records.len());
        more.into_iter()
            .map(|((record, _), first)| (record.name.clone(), first.name.clone()))
            .collect()
    }

    fn links(device: u64, nlink: u64) -> Option<HardLinks> {
        Some(HardLinks { device, nlink })
    }

    fn pair(a: &str, b: &str) -> Vec<(String, String)> {
        vec![(a.to_owned(), b.to_owned())]
    }

    #[test]
    fn files_on_two_devices_with_one_inode_change_time_and_content_are_not_linked() {
        // Two snapshots of one file system under DIR: the same inode,
        // change time and bytes, but two files.
        let (a, b) = (
            put_file("t/a", 1, links(1, 2)),
            put_file("t/b", 1, links(2, 2)),
        );
        assert!(linked(&[a, b]).is_empty());
    }

    #[test]
    fn a_file_with_one_link_is_linked_to_nothing() {
        let (a, b) = (
            put_file("t/a", 1, links(1, 1)),
            put_file("t/b", 1, links(1, 1)),
        );
        assert!(linked(&[a, b]).is_empty());
        // One side with one link is not enough either.
        let (a, b) = (
            put_file("t/a", 1, links(1, 2)),
            put_file("t/b", 1, links(1, 1)),
        );
        assert!(linked(&[a, b]).is_empty());
    }

    #[test]
    fn links_of_one_file_on_one_device_are_linked_again() {
        let (a, b, c) = (
            put_file("t/a", 1, links(3, 2)),
            put_file("t/b", 1, links(3, 2)),
            put_file("t/c", 2, links(3, 2)),
        );
        // Given in any order, linked to the first by name; other content
        // is another file.
        assert_eq!(linked(&[c, b, a]), pair("t/b", "t/a"));
    }

    #[test]
    fn versions_put_before_devices_were_recorded_are_linked_as_before() {
        let (a, b) = (put_file("t/a", 1, None), put_file("t/b", 1, None));
        assert_eq!(linked(&[a.clone(), b]), pair("t/b", "t/a"));
        // With one that has a device, which device the other was on is
        // not known: not linked.
        let c = put_file("t/c", 1, links(3, 2));
        assert!(linked(&[a, c]).is_empty());
    }
}
