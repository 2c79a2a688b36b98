//! Output that appears only once it is whole. A file is written through a
//! temporary file in its directory and renamed into place; standard output
//! (and an output path that is not a regular file, such as `/dev/null` or a
//! named pipe) is fed from an encrypted spool (`seccs-tempfile`: memory up to
//! [`SPOOL_IN_MEMORY`], then a file sealed under a key that dies with the
//! process) once everything was produced and authenticated. A failure half
//! way (a tampered or truncated input, a full disk) leaves no partial
//! output, and a crash leaves no readable plaintext in a temporary file.
//! A file keeps holes where whole blocks are zero (see [`crate::sparse`]).

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};

use seccs_store::catalog::Xattr;

use crate::sparse::SparseWriter;

/// Bytes of output held in memory before the spool moves to an encrypted
/// temporary file.
pub const SPOOL_IN_MEMORY: usize = 8 << 20;

/// Writes `path`, or standard output when `path` is `None`, with what
/// `fill` produces, only if `fill` succeeds.
pub fn write_output(
    path: Option<&Path>,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    match path {
        Some(path) => write_file_atomically(path, fill),
        None => write_stdout_when_whole(fill),
    }
}

/// Standard output for a command's report (what it stored, checked,
/// listed), as opposed to data it reads out (`get`, `share load`).
///
/// A reader that has gone (a closed pipe: `seccs put DIR | head`) ends the
/// report, not the command: what follows is dropped, the work goes on, and
/// its problems and findings still reach standard error and the exit
/// status. Were the closed pipe an error, the command would stop half way
/// and `main` would take it for success (it ends `get … | head` with 0),
/// so `put` would store part of a tree and `verify` would hide what it
/// found behind a 0.
pub struct ReportOut {
    out: io::StdoutLock<'static>,
    reader_gone: bool,
}

/// Standard output for a report (see [`ReportOut`]).
pub fn report_out() -> ReportOut {
    ReportOut {
        out: io::stdout().lock(),
        reader_gone: false,
    }
}

impl ReportOut {
    fn unless_gone(&mut self, done: io::Result<()>) -> io::Result<()> {
        match done {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.reader_gone = true;
                Ok(())
            }
            other => other,
        }
    }
}

impl Write for ReportOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.reader_gone {
            return Ok(buf.len());
        }
        match self.out.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => self.unless_gone(Err(e)).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.reader_gone {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.unless_gone(flushed)
    }
}

/// Writes `data`, already whole, to `path` (through a temporary file and a
/// rename) or to standard output when `path` is `None`.
pub fn write_bytes(path: Option<&Path>, data: &[u8]) -> Result<()> {
    match path {
        Some(path) => write_file_atomically(path, |out| Ok(out.write_all(data)?)),
        None => {
            let mut out = io::stdout().lock();
            out.write_all(data)?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Writes a file through a temporary file in the same directory, renamed into
/// place only if `fill` succeeds: a failed read leaves no partial file.
///
/// A path that names a symbolic link is written through the link: the file
/// it points to is replaced and the link stays (unless the link, or one it
/// leads through at any hop, is another user's link in a shared sticky
/// directory, which is refused). This process's
/// standard output or error by any name (`/dev/stdout`, `/dev/fd/2`,
/// `/proc/self/fd/1`) is written through the descriptor it inherited, at
/// the offset the shell shares with it; another open descriptor
/// (`/dev/fd/N`, a `>(cmd)`) is appended to; neither is ever replaced. A
/// path that names something
/// other than a regular file (`/dev/null`, a named pipe, a terminal) is
/// written in place, fed like standard output from a spool once `fill` has
/// succeeded: renaming a file over it would replace the device node itself.
pub fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    write_file_atomically_as(path, &FileAttrs::default(), AtLink::Follow, fill)
}

/// What writing a file does with a symbolic link at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtLink {
    /// Writes the file it points to (checked hop by hop, see
    /// [`write_file_atomically`]), as `cp` and a shell's `>` do: what
    /// `kms encrypt|decrypt --out` and `share load` write.
    Follow,
    /// Replaces the link itself with the file, never following it, as tar
    /// and a tree restore do: what `get -o FILE` writes. Only a name of an
    /// open descriptor as given (`/dev/stdout`, `/dev/fd/N`) is written
    /// through; a link elsewhere that leads to one is replaced too.
    Replace,
}

/// What a restored file takes from the version it is restored from, set on
/// the temporary file before the rename, so the file appears with them.
#[derive(Debug, Default, Clone)]
pub struct FileAttrs {
    /// Permission bits (at most `0o7777`); without them the file is
    /// readable and writable by its owner only.
    pub mode: Option<u32>,
    /// Modification time.
    pub modified: Option<SystemTime>,
    /// Numeric owner and group, set before the bits (a change of owner
    /// clears setuid and setgid). Only a restore run as root sets them, as
    /// tar does: no one else may give a file away.
    pub owner: Option<(u32, u32)>,
    /// Extended attributes, set after the owner (a change of owner clears
    /// file capabilities) and before the bits (a read-only file stays
    /// writable until then).
    pub xattrs: Vec<Xattr>,
}

impl FileAttrs {
    /// Sets these on `file`. Extended attributes that cannot be set (a file
    /// system without them, a label the system's policy refuses) do not
    /// stop the rest, nor lose the file: they are the inner error, for the
    /// caller to report once the file is in place.
    ///
    /// An owner that cannot be given (a root without the right to, as in
    /// a user namespace) does not lose the file either: it keeps the
    /// restorer as owner, without setuid and setgid bits (as `cp -p` and
    /// tar drop them then), and that is the inner error.
    fn apply(&self, file: &File) -> io::Result<io::Result<()>> {
        if let Some(time) = self.modified {
            file.set_modified(time)?;
        }
        let mut mode = self.mode;
        let mut unset = Vec::new();
        #[cfg(unix)]
        if let Some((uid, gid)) = self.owner
            && let Err(e) = std::os::unix::fs::fchown(file, Some(uid), Some(gid))
        {
            mode = mode.map(|m| m & !0o6000);
            unset.push(format!(
                "cannot give it its owner {uid}:{gid} ({e}; --no-same-owner leaves owners \
                 alone), so it keeps the restorer's, without setuid or setgid bits"
            ));
        }
        if let Err(e) = crate::xattr::set_on_file(file, &self.xattrs) {
            unset.push(e.to_string());
        }
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        Ok(match unset.is_empty() {
            true => Ok(()),
            false => Err(io::Error::other(unset.join("; "))),
        })
    }

    /// Gives the symlink at `path` itself (not what it points to) this
    /// owner and time; a link has no bits of its own to set.
    #[cfg(unix)]
    pub fn apply_to_link(&self, path: &Path) -> io::Result<()> {
        use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        let xattrs = crate::xattr::set_on_entry(path, &self.xattrs);
        let Some(time) = self.modified else {
            return xattrs;
        };
        let (tv_sec, tv_nsec) = match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(before) => {
                // Before the epoch: whole seconds down, nanoseconds up.
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                match d.subsec_nanos() {
                    0 => (-secs, 0),
                    n => (-secs - 1, 1_000_000_000 - n),
                }
            }
        };
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec,
                tv_nsec: tv_nsec.into(),
            },
        };
        utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        xattrs
    }

    /// Gives the directory at `path` these bits, owner and time (through a
    /// read-only handle: a directory cannot be opened for writing).
    pub fn apply_to_dir(&self, path: &Path) -> io::Result<()> {
        if self.mode.is_none()
            && self.modified.is_none()
            && self.owner.is_none()
            && self.xattrs.is_empty()
        {
            return Ok(());
        }
        // Never through a symlink, and only to a directory: a restore
        // checks what it finds at `path`, but the final component could be
        // swapped for a link between that check and this open.
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
            .open(path)?;
        self.apply(&dir)?
    }
}

/// [`write_file_atomically`], giving the file `attrs` (a path that is not a
/// regular file, such as a device, keeps its own), a symlink at `path`
/// followed or replaced as `at_link` says.
pub fn write_file_atomically_as(
    path: &Path,
    attrs: &FileAttrs,
    at_link: AtLink,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let descriptor = match at_link {
        AtLink::Follow => open_descriptor(path, DESCRIPTOR_HOPS),
        AtLink::Replace => open_descriptor(path, 0),
    };
    // This process's own standard output or error, when open, is written
    // through the descriptor it inherited, whose offset the shell's later
    // writes share. Opened again by name it would be a new description
    // with an offset of its own: in `{ echo a; seccs get f -o /dev/stdout;
    // echo b; } > out`, `echo b` would overwrite what seccs wrote. (A
    // closed one fails to open below, where the standard handle would
    // drop every byte.)
    if let Some(own @ (Descriptor::Stdout | Descriptor::Stderr)) = descriptor
        && std::fs::metadata(path).is_ok()
    {
        return match own {
            Descriptor::Stdout => write_when_whole(
                &mut io::stdout().lock(),
                &shown(path),
                SPOOL_IN_MEMORY,
                fill,
            ),
            _ => write_when_whole(
                &mut io::stderr().lock(),
                &shown(path),
                SPOOL_IN_MEMORY,
                fill,
            ),
        };
    }
    if descriptor.is_some() {
        // `/dev/stdout`, `/dev/fd/N`, `>(cmd)`: the descriptor the shell
        // opened is written, at its end, whatever it is; resolving the link
        // and renaming over its target would replace the file a `>>`
        // opened (and give it the version's bits), and a pipe has no
        // target to resolve.
        let mut target = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", shown(path)))?;
        return write_when_whole(&mut target, &shown(path), SPOOL_IN_MEMORY, fill);
    }
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => match at_link {
            AtLink::Follow => {
                resolved = resolve_links_checked(path)?;
                resolved.as_path()
            }
            // Renamed over the link itself: what it points to (a file, a
            // directory, nothing) is never looked at, let alone written.
            AtLink::Replace => {
                check_parent(path)?;
                return write_beside(path, path, attrs, Durability::Now, fill)?.put_in_place();
            }
        },
        _ => path,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            anyhow::bail!("cannot write {}: it is a directory", shown(path))
        }
        Ok(meta) if !meta.is_file() => {
            let mut target = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot write {}", shown(path)))?;
            return write_when_whole(&mut target, &shown(path), SPOOL_IN_MEMORY, fill);
        }
        _ => {}
    }
    check_parent(path)?;
    write_beside(path, path, attrs, Durability::Now, fill)?.put_in_place()
}

/// Which open file descriptor a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Descriptor {
    /// This process's standard output (descriptor 1).
    Stdout,
    /// This process's standard error (descriptor 2).
    Stderr,
    /// Another of this process's descriptors, or one of another process.
    Other,
}

/// How many links [`open_descriptor`] follows from a path that
/// [`AtLink::Follow`] writes through.
const DESCRIPTOR_HOPS: usize = 7;

/// The open file descriptor that `path` is, or links to (in at most `hops`
/// hops), a name for: `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
/// `/proc/PID/fd/N`.
fn open_descriptor(path: &Path, hops: usize) -> Option<Descriptor> {
    let own = |n: &std::ffi::OsStr| match n.to_str() {
        Some("1") => Descriptor::Stdout,
        Some("2") => Descriptor::Stderr,
        _ => Descriptor::Other,
    };
    let descriptor = |p: &Path| {
        let parts: Vec<_> = p.components().map(|c| c.as_os_str()).collect();
        if !p.is_absolute() {
            return None;
        }
        match parts.as_slice() {
            [_, dev, name] if *dev == "dev" && *name == "stdout" => Some(Descriptor::Stdout),
            [_, dev, name] if *dev == "dev" && *name == "stderr" => Some(Descriptor::Stderr),
            [_, dev, fd, n] if *dev == "dev" && *fd == "fd" => Some(own(n)),
            [_, proc, pid, fd, n] if *proc == "proc" && *fd == "fd" => {
                let this = std::process::id().to_string();
                Some(match pid.to_str() {
                    Some(pid) if pid == "self" || pid == this => own(n),
                    _ => Descriptor::Other,
                })
            }
            _ => None,
        }
    };
    let mut at = path.to_path_buf();
    for hop in 0..=hops {
        if let Some(found) = descriptor(&at) {
            return Some(found);
        }
        if hop == hops {
            return None;
        }
        match std::fs::read_link(&at) {
            Ok(target) if target.is_absolute() => at = target,
            Ok(target) => {
                at = at
                    .parent()
                    .map_or_else(|| target.clone(), |dir| dir.join(&target))
            }
            Err(_) => return None,
        }
    }
    None
}

/// How many links [`resolve_links_checked`] follows, as the kernel's
/// `MAXSYMLINKS`.
const LINKS_FOLLOWED: usize = 40;

/// The path `path` resolves to (absolute, no link in it), its links
/// followed one hop at a time, each checked by
/// [`refuse_foreign_link_in_shared_dir`]: a chain that passes through
/// another user's link in a shared sticky directory, at any hop or as a
/// directory of the path, is refused as that link itself would be.
fn resolve_links_checked(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let nowhere = || format!("cannot write {}: the link points nowhere", shown(path));
    let mut done = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().with_context(nowhere)?
    };
    // The components left to walk, the next one last.
    let mut left: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut followed = 0;
    while let Some(part) = left.pop() {
        match Path::new(&part).components().next() {
            Some(Component::RootDir) => done = PathBuf::from("/"),
            Some(Component::ParentDir) => {
                // `done` holds no link, so its parent is the one `..` reaches.
                done.pop();
            }
            Some(Component::Normal(_)) => {
                let next = done.join(&part);
                let meta = std::fs::symlink_metadata(&next).with_context(nowhere)?;
                if !meta.file_type().is_symlink() {
                    done = next;
                    continue;
                }
                followed += 1;
                if followed > LINKS_FOLLOWED {
                    anyhow::bail!(
                        "cannot write {}: more than {LINKS_FOLLOWED} links to follow",
                        shown(path)
                    );
                }
                refuse_foreign_link_in_shared_dir(&next)?;
                let target = std::fs::read_link(&next).with_context(nowhere)?;
                left.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
            }
            _ => {}
        }
    }
    Ok(done)
}

/// Refuses to write through the symlink at `path` where the kernel's
/// `protected_symlinks` would refuse to follow it: in a world-writable
/// sticky directory (`/tmp`), a link owned by neither this user nor the
/// directory's owner. Writing resolves the link and renames over its
/// target, which the kernel's check never sees, so another user's link in
/// `/tmp` would otherwise choose what a restore (run as root) replaces.
fn refuse_foreign_link_in_shared_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = parent_dir(path);
    let (Ok(link), Ok(dir_meta)) = (std::fs::symlink_metadata(path), std::fs::metadata(dir)) else {
        return Ok(());
    };
    let shared = dir_meta.mode() & 0o1002 == 0o1002;
    let me = rustix::process::geteuid().as_raw();
    if shared && link.uid() != me && link.uid() != dir_meta.uid() {
        anyhow::bail!(
            "cannot write {}: it is a symlink another user (uid {}) owns in a shared sticky \
             directory, which is not followed; remove it or give the path it points to",
            shown(path),
            link.uid()
        );
    }
    Ok(())
}

/// Writes a file a tree restore gives back at `at` (shown as `shown`),
/// as [`write_file_atomically_as`] but never through a symlink, not even
/// one swapped in at `at` just before: the file is renamed over whatever
/// is there (the caller removed anything but a file or a directory).
/// `dir_in_the_way` is whether the caller found a directory at `at`,
/// which is refused: passed in, since the caller looked already, so that a
/// restore looks at each path once.
pub fn write_restored(
    at: &Path,
    shown: &Path,
    dir_in_the_way: bool,
    attrs: &FileAttrs,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Unplaced> {
    if dir_in_the_way {
        anyhow::bail!("cannot write {}: it is a directory", self::shown(shown))
    }
    write_beside(at, shown, attrs, durability, fill)
}

/// When a file written beside its target is made durable: before it is
/// renamed into place, so that a crash leaves the old file or the whole
/// new one, never a name with lost data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync` the file itself.
    Now,
    /// The caller syncs its file system (one `syncfs` for a group of
    /// files, see [`sync_file_systems`]) before it puts the file in place.
    ByCaller,
}

/// A file written whole beside its target, not yet put in place. Dropped
/// unplaced, it is gone: an unnamed one with its descriptor, a named one
/// removed (an interrupt meanwhile removes it too).
#[must_use = "the file is removed unless it is put in place"]
pub struct Unplaced {
    file: Pending,
    path: std::path::PathBuf,
    shown: std::path::PathBuf,
    /// An attribute that could not be set, said once the file is in place.
    unset: io::Result<()>,
}

/// How a file waiting to be put in place is held.
enum Pending {
    /// With no name (`O_TMPFILE`) in `dir`, until it is linked at its
    /// target: a process killed before that leaves nothing.
    Unnamed { file: File, dir: std::path::PathBuf },
    /// Under a temporary name from the start, where the file system makes
    /// no unnamed files.
    Named {
        tmp: tempfile::TempPath,
        _removed_on_interrupt: crate::interrupt::Registered,
    },
}

impl Unplaced {
    /// Puts the file at its target. With [`Durability::ByCaller`], only
    /// once the caller has synced the file system it is on.
    ///
    /// An unnamed file is linked at its target when nothing is there, and
    /// otherwise under a temporary name renamed over it at once, so a name
    /// other than the target's lives for two system calls at most.
    pub fn put_in_place(self) -> Result<()> {
        let Unplaced {
            file,
            path,
            shown,
            unset,
        } = self;
        let cannot_write = || format!("cannot write {}", self::shown(&shown));
        match file {
            Pending::Unnamed { file, dir } => match link_unnamed(&file, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let (tmp, _removed_on_interrupt) =
                        crate::interrupt::name_in(&dir, &file).with_context(cannot_write)?;
                    if let Err(e) = std::fs::rename(&tmp, &path) {
                        // Not left behind holding the output's plaintext.
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e).with_context(cannot_write);
                    }
                }
                Err(e) => return Err(e).with_context(cannot_write),
            },
            // A failed rename hands the temporary path back inside the
            // error; it is dropped here, which removes the file, rather than
            // kept alive in the error until the process exits (leaving the
            // output's plaintext behind).
            Pending::Named { tmp, .. } => tmp
                .persist(&path)
                .map_err(|e| e.error)
                .with_context(cannot_write)?,
        }
        unset.with_context(|| format!("{} is written, but not whole", self::shown(&shown)))
    }
}

/// Links `file`, an unnamed file (`O_TMPFILE`), at `path`, which must not
/// exist (`AlreadyExists` if it does; a link there is not followed). It is
/// linked through `/proc/self/fd`, which needs no privilege, unlike
/// linking the descriptor itself (`AT_EMPTY_PATH`).
pub(crate) fn link_unnamed(file: &File, path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = format!("/proc/self/fd/{}", file.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        source.as_str(),
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// Makes everything written on the file systems that hold `dirs` durable:
/// one `syncfs` each (pass one directory per file system), in place of a
/// `fsync` per file, which on many small files costs more than writing
/// them.
pub fn sync_file_systems<'d>(
    dirs: impl IntoIterator<Item = &'d std::os::fd::OwnedFd>,
) -> io::Result<()> {
    for dir in dirs {
        rustix::fs::syncfs(dir)?;
    }
    Ok(())
}

/// Writes `path` (shown as `path_shown`) through a temporary file beside
/// it, given `attrs`, to be put in place once whole ([`Unplaced`]). The
/// file has no name until then where the file system allows it (see
/// [`crate::interrupt`]): a process killed while it writes leaves nothing.
fn write_beside(
    path: &Path,
    path_shown: &Path,
    attrs: &FileAttrs,
    durability: Durability,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Unplaced> {
    write_beside_as(path, path_shown, attrs, durability, Naming::Late, fill)
}

/// When a file written beside its target gets its temporary name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    /// Once whole, where the file system makes unnamed files; from the
    /// start elsewhere.
    Late,
    /// From the start (what a file system without unnamed files gets; its
    /// own tests choose it).
    #[cfg_attr(not(test), allow(dead_code))]
    Early,
}

/// [`write_beside`], naming the file as `naming` says.
fn write_beside_as(
    path: &Path,
    path_shown: &Path,
    attrs: &FileAttrs,
    durability: Durability,
    naming: Naming,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<Unplaced> {
    let dir = parent_dir(path);
    let cannot_write_in = || format!("cannot write in {}", shown(parent_dir(path_shown)));
    crate::interrupt::watch();
    let unnamed = match naming {
        Naming::Late => open_unnamed(dir).with_context(cannot_write_in)?,
        Naming::Early => None,
    };
    let (file, named) = match unnamed {
        Some(file) => (file, None),
        None => {
            let (tmp, registered) =
                crate::interrupt::temp_file_in(dir).with_context(cannot_write_in)?;
            let (file, tmp) = tmp.into_parts();
            (file, Some((tmp, registered)))
        }
    };
    // A file that replaces one keeps its owner and permission bits, as `cp`
    // keeps them (it writes in place), unless the version restored brings
    // its own (with `--no-same-owner`, a named version's file is the
    // restorer's, as tar makes it).
    #[cfg(unix)]
    if attrs.mode.is_none()
        && let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_file()
    {
        if attrs.owner.is_none() {
            keep_replaced_owner(&file, &meta);
        }
        use std::os::unix::fs::PermissionsExt;
        let bits = std::fs::Permissions::from_mode(meta.permissions().mode() & 0o777);
        file.set_permissions(bits)
            .with_context(|| format!("cannot write {}", shown(path_shown)))?;
    }
    // Whole blocks of zeros are left as holes: a sparse file comes back
    // sparse. The file is written through its `File`, so that a failed
    // write (a full disk) is the system's error alone, not one that names
    // a temporary path the user never gave.
    let mut out = SparseWriter::new(file);
    fill(&mut out)?;
    let file = out
        .finish(|file, len| file.set_len(len))
        .with_context(|| format!("cannot write {}", shown(path_shown)))?;
    // An unnamed file given away or made unreadable is still linked where
    // hard links are protected (`fs.protected_hardlinks`): by its owner,
    // or by root, who may give it away (CAP_FOWNER).
    let unset = attrs
        .apply(&file)
        .with_context(|| format!("cannot set the mode or time of {}", shown(path_shown)))?;
    if durability == Durability::Now {
        file.sync_all()
            .with_context(|| format!("cannot write {}", shown(path_shown)))?;
    }
    let file = match named {
        Some((tmp, registered)) => Pending::Named {
            tmp,
            _removed_on_interrupt: registered,
        },
        None => Pending::Unnamed {
            file,
            dir: dir.to_path_buf(),
        },
    };
    Ok(Unplaced {
        file,
        path: path.to_path_buf(),
        shown: path_shown.to_path_buf(),
        unset,
    })
}

/// Gives `file`, which replaces the regular file `replaced` describes, that
/// file's owner and group. Only root may give a file away, so for anyone
/// else this does what `mv` does: the new file is the writer's. That is
/// not an error, the writer could replace the file by hand just the same.
#[cfg(unix)]
fn keep_replaced_owner(file: &File, replaced: &std::fs::Metadata) {
    use std::os::unix::fs::MetadataExt;
    let Ok(own) = file.metadata() else { return };
    let uid = (replaced.uid() != own.uid()).then_some(replaced.uid());
    let gid = (replaced.gid() != own.gid()).then_some(replaced.gid());
    if uid.is_some() || gid.is_some() {
        // Best effort by design (see above): a refusal leaves the writer's.
        let _ = std::os::unix::fs::fchown(file, uid, gid);
    }
}

/// A new file with no name in `dir` (`O_TMPFILE`), readable and writable
/// by its owner only; `None` where the kernel or the file system cannot
/// make one, or where `/proc` (through which it is named later) is not
/// mounted.
fn open_unnamed(dir: &Path) -> io::Result<Option<File>> {
    use rustix::fs::{Mode, OFlags};
    // Looked up once a process, not once a file: a tree restore writes
    // many.
    static PROC_MOUNTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC_MOUNTED.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return Ok(None);
    }
    match rustix::fs::openat(
        rustix::fs::CWD,
        dir,
        OFlags::RDWR | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::RUSR | Mode::WUSR,
    ) {
        Ok(fd) => Ok(Some(File::from(fd))),
        // EOPNOTSUPP: a file system without unnamed files; EISDIR: a
        // kernel older than them, which reads the flag as O_DIRECTORY.
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::ISDIR => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The directory a file at `path` goes in: its parent, or `.` for a bare
/// name.
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// A path as messages show it (control characters escaped).
fn shown(path: &Path) -> String {
    crate::tree::shown_path(path)
}

/// The directory a file at `path` is written in, checked at once, before
/// anything is read for it: it must be a directory (one that does not
/// exist is not called "not a directory"), and `path` must not end in `/`
/// (`-o out/`), which names a directory where there is none (one that
/// exists is refused before), as `cp` says it, rather than as "No such
/// file or directory" once the whole content was read.
fn check_parent(path: &Path) -> Result<&Path> {
    use std::os::unix::ffi::OsStrExt;
    let dir = parent_dir(path);
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => anyhow::bail!(
            "cannot write {}: {} is not a directory",
            shown(path),
            shown(dir)
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => anyhow::bail!(
            "cannot write {}: {} does not exist",
            shown(path),
            shown(dir)
        ),
        Err(e) => anyhow::bail!("cannot write {}: {}: {e}", shown(path), shown(dir)),
    }
    if path.as_os_str().as_bytes().ends_with(b"/") {
        anyhow::bail!(
            "cannot write {}: a path ending in / names a directory, and there is none",
            shown(path)
        );
    }
    Ok(dir)
}

/// A writer that keeps the first error its inner writer gave. A reader
/// that feeds it (the store) reports that error as its own, which would
/// call a full disk a failed read; with this, the caller can tell.
struct WriteErrors<'w> {
    inner: &'w mut dyn Write,
    first: Option<io::Error>,
}

impl WriteErrors<'_> {
    fn keep<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &result
            && self.first.is_none()
        {
            self.first = Some(io::Error::new(e.kind(), e.to_string()));
        }
        result
    }
}

impl Write for WriteErrors<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.keep(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush();
        self.keep(result)
    }
}

/// Runs `fill`, which writes into `out`, the output `written`. When it
/// fails because writing `out` failed, the error says so ("cannot write
/// `written`: No space left on device"), the cause once and kept as the
/// I/O error it is; any other error is returned as `fill` gave it. A
/// writer of a stream (`kms encrypt`) would otherwise report a full disk
/// only as its own "stream I/O failed", naming no file.
pub fn naming_write_errors(
    out: &mut dyn Write,
    written: &str,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut tracked = WriteErrors {
        inner: out,
        first: None,
    };
    match fill(&mut tracked) {
        Ok(()) => Ok(()),
        Err(e) => match tracked.first {
            Some(w) => Err(anyhow::Error::new(w).context(format!("cannot write {written}"))),
            None => Err(e),
        },
    }
}

/// Runs `read`, which reads `what` into `out`, the output `written`. When
/// it fails because writing `out` failed, the error says so ("cannot write
/// `written`: No space left on device"), the cause once and kept as the
/// I/O error it is (a closed pipe is told by its kind); otherwise it says
/// reading `what` failed.
pub fn read_into<E>(
    out: &mut dyn Write,
    written: &str,
    what: &str,
    read: impl FnOnce(&mut dyn Write) -> std::result::Result<(), E>,
) -> Result<()>
where
    E: Into<anyhow::Error>,
{
    let mut tracked = WriteErrors {
        inner: out,
        first: None,
    };
    match read(&mut tracked) {
        Ok(()) => Ok(()),
        Err(e) => match tracked.first {
            Some(w) => Err(anyhow::Error::new(w).context(format!("cannot write {written}"))),
            None => Err(e.into().context(format!(
                "cannot read {}",
                crate::tree::shown_name(what, seccs_store::catalog::EntryKind::File)
            ))),
        },
    }
}

/// Makes `path` a symlink to `target` (a link's bytes, as `put` read them)
/// with `attrs`' owner, time and attributes, as [`place_link`] does. A
/// directory at `path` is refused, as for a file.
///
/// What is written in place and never replaced when a file is restored
/// there (standard output or another open descriptor by any name, a named
/// pipe, a device, a socket) is not replaced by a link either: it gets the
/// link's target as bytes, as standard output does without `-o`. So
/// `-o /dev/null` reads a link back without making `/dev/null` one. A
/// symlink at `path` is replaced, never followed (only a descriptor's own
/// name, such as `/dev/stdout`, is written through).
#[cfg(unix)]
pub fn write_link_atomically(path: &Path, target: &[u8], attrs: &FileAttrs) -> Result<()> {
    let found = std::fs::symlink_metadata(path);
    if found.as_ref().is_ok_and(|m| m.is_dir()) {
        anyhow::bail!("cannot write {}: it is a directory", shown(path));
    }
    let special = found.is_ok_and(|m| {
        let kind = m.file_type();
        !(kind.is_file() || kind.is_symlink())
    });
    if special || open_descriptor(path, 0).is_some() {
        return write_file_atomically(path, |out| Ok(out.write_all(target)?));
    }
    check_parent(path)?;
    place_link(path, path, target, attrs)
}

/// Makes `path` (`shown` in messages) a symlink to `target` with `attrs`:
/// made under a temporary name beside it and renamed into place, so that
/// what was at `path` (a file, or a link, which is replaced, never
/// followed) goes only once the new link is whole, and is kept when the
/// link cannot be made.
#[cfg(unix)]
pub fn place_link(path: &Path, shown_as: &Path, target: &[u8], attrs: &FileAttrs) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (dir, shown_dir) = (parent_dir(path), parent_dir(shown_as));
    let target = std::ffi::OsStr::from_bytes(target);
    // A fresh name: a link cannot be made over one that exists. Registered
    // as it is made, so that an interrupt before the rename removes it.
    let (tmp, _removed_on_interrupt) = crate::interrupt::make_registered(
        || {
            (0..100u32)
                .map(|i| dir.join(format!(".seccs-link-{}-{i}", std::process::id())))
                .find_map(|tmp| match std::os::unix::fs::symlink(target, &tmp) {
                    Ok(()) => Some(Ok(tmp)),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => None,
                    Err(e) => Some(Err(e)),
                })
                .unwrap_or_else(|| Err(io::Error::from(io::ErrorKind::AlreadyExists)))
        },
        |tmp| tmp.as_path(),
    )
    .with_context(|| format!("cannot write in {}", shown(shown_dir)))?;
    let placed = attrs
        .apply_to_link(&tmp)
        .with_context(|| format!("cannot set the time of link {}", shown(shown_as)))
        .and_then(|()| {
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", shown(shown_as)))
        });
    if placed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    placed
}

/// Spools what `fill` produces in an encrypted temporary file and copies it
/// to standard output only if `fill` succeeds.
pub fn write_stdout_when_whole(fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    write_when_whole(
        &mut io::stdout().lock(),
        "standard output",
        SPOOL_IN_MEMORY,
        fill,
    )
}

/// Spools what `fill` produces (in memory up to `in_memory` bytes, then in
/// an encrypted temporary file) and copies it to `out` (shown as
/// `out_shown`) only if `fill` succeeds. An error of `fill` is returned as
/// it is (a read that failed is not a failure to write `out`).
fn write_when_whole(
    out: &mut dyn Write,
    out_shown: &str,
    in_memory: usize,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let mut spool = seccs_tempfile::spooled_tempfile(in_memory);
    let spool_failed = |e: io::Error| {
        anyhow::Error::new(e).context(format!(
            "cannot write the encrypted spool that holds what goes to {out_shown} until it is \
             whole, in the temporary directory {} (TMPDIR); set TMPDIR to a directory with room",
            std::env::temp_dir().display()
        ))
    };
    let mut tracked = WriteErrors {
        inner: &mut spool,
        first: None,
    };
    let filled = fill(&mut tracked);
    // A write that failed was the spool's, whatever the filler took it
    // for (read_into says "cannot write OUTPUT").
    if let Some(e) = tracked.first {
        return Err(spool_failed(e));
    }
    filled?;
    spool.seek(SeekFrom::Start(0)).map_err(spool_failed)?;
    io::copy(&mut spool, out)
        .and_then(|_| out.flush())
        .with_context(|| format!("cannot write {out_shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn spooled_output_appears_whole_or_not_at_all() -> Result<()> {
        let data = bytes(3 << 20);
        // Past the in-memory limit the spool is an encrypted file.
        let mut out = Vec::new();
        write_when_whole(&mut out, "out", 1 << 20, |w| Ok(w.write_all(&data)?))?;
        assert_eq!(out, data);

        let mut out = Vec::new();
        let failed = write_when_whole(&mut out, "out", 1 << 20, |w| {
            w.write_all(&data)?;
            anyhow::bail!("the last segment did not authenticate")
        });
        assert!(failed.is_err());
        assert!(out.is_empty(), "{} bytes escaped a failed fill", out.len());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_owner_where_the_writer_may_give_it() -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("theirs");
        std::fs::write(&path, b"old")?;
        // Whether this process may give files away (root may): the
        // replaced file's owner can be kept only then.
        let privileged = std::os::unix::fs::chown(&path, Some(4321), Some(8765)).is_ok();
        let before = std::fs::metadata(&path)?;
        write_file_atomically(&path, |w| Ok(w.write_all(b"new")?))?;
        let after = std::fs::metadata(&path)?;
        assert_eq!(std::fs::read(&path)?, b"new");
        if privileged {
            assert_eq!((after.uid(), after.gid()), (4321, 8765));
        } else {
            // As `mv`: the writer's file, nothing refused.
            assert_eq!(after.uid(), before.uid());
        }
        // A version that brings its own owner has it, not the replaced one's.
        if privileged {
            let attrs = FileAttrs {
                owner: Some((1111, 2222)),
                ..FileAttrs::default()
            };
            write_file_atomically_as(&path, &attrs, AtLink::Follow, |w| Ok(w.write_all(b"v2")?))?;
            let meta = std::fs::metadata(&path)?;
            assert_eq!((meta.uid(), meta.gid()), (1111, 2222));
        }
        Ok(())
    }

    #[test]
    fn a_link_is_written_through_and_stays_a_link() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("target");
        std::fs::write(&target, b"old")?;
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link)?;
        write_file_atomically(&link, |w| Ok(w.write_all(b"new")?))?;
        assert!(std::fs::symlink_metadata(&link)?.file_type().is_symlink());
        assert_eq!(std::fs::read(&target)?, b"new");
        Ok(())
    }

    /// [`AtLink::Replace`] renames the file over a link, whatever it points
    /// to, and never writes the link's target.
    #[test]
    fn a_link_is_replaced_when_asked_and_its_target_kept() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("target");
        std::fs::write(&target, b"old")?;
        for (name, to) in [
            ("link", target.clone()),
            ("to-dir", dir.path().to_path_buf()),
            ("dangling", dir.path().join("nowhere")),
        ] {
            let link = dir.path().join(name);
            std::os::unix::fs::symlink(&to, &link)?;
            write_file_atomically_as(&link, &FileAttrs::default(), AtLink::Replace, |w| {
                Ok(w.write_all(b"new")?)
            })?;
            assert!(std::fs::symlink_metadata(&link)?.is_file(), "{name}");
            assert_eq!(std::fs::read(&link)?, b"new", "{name}");
            assert_eq!(std::fs::read(&target)?, b"old", "{name}");
        }
        assert!(!dir.path().join("nowhere").exists());
        Ok(())
    }

    /// Written through, a link another user owns in a shared sticky
    /// directory is refused, at any hop of a chain and as a directory on
    /// the way, where the kernel's `protected_symlinks` would refuse to
    /// follow it; one's own chain is written through to its end. (Only
    /// root can give a link another owner.)
    #[test]
    fn writing_through_another_users_link_in_a_sticky_directory_is_refused() -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            return Ok(());
        }
        let tmp = tempfile::tempdir()?;
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared)?;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))?;
        let victims = tmp.path().join("victims");
        std::fs::create_dir(&victims)?;
        let victim = victims.join("victim");
        std::fs::write(&victim, b"keep")?;
        let foreign = shared.join("out");
        std::os::unix::fs::symlink(&victim, &foreign)?;
        std::os::unix::fs::lchown(&foreign, Some(4321), Some(4321))?;
        let mine = tmp.path().join("mine");
        std::os::unix::fs::symlink(&foreign, &mine)?;
        let foreign_dir = shared.join("dir");
        std::os::unix::fs::symlink(&victims, &foreign_dir)?;
        std::os::unix::fs::lchown(&foreign_dir, Some(4321), Some(4321))?;
        let mine_too = tmp.path().join("mine-too");
        std::os::unix::fs::symlink(foreign_dir.join("victim"), &mine_too)?;
        for path in [&foreign, &mine, &mine_too] {
            let err = write_file_atomically(path, |w| Ok(w.write_all(b"new")?))
                .err()
                .context("another user's link was followed")?;
            let err = format!("{err:#}");
            assert!(
                err.contains("symlink another user (uid 4321) owns in a shared sticky directory"),
                "{err}"
            );
            assert_eq!(std::fs::read(&victim)?, b"keep");
        }
        let own = tmp.path().join("own");
        std::os::unix::fs::symlink(&victim, &own)?;
        let own_too = tmp.path().join("own-too");
        std::os::unix::fs::symlink("own", &own_too)?;
        write_file_atomically(&own_too, |w| Ok(w.write_all(b"new")?))?;
        assert_eq!(std::fs::read(&victim)?, b"new");
        assert!(std::fs::symlink_metadata(&own_too)?.is_symlink());
        Ok(())
    }

    /// A named pipe (like `/dev/null`, not a regular file) is written in
    /// place and stays a pipe; a rename over it would replace the node.
    #[test]
    fn a_named_pipe_is_written_in_place() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
        anyhow::ensure!(made.success(), "mkfifo failed: {made}");
        let data = bytes(3 << 20);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(fifo))
        };
        write_file_atomically(&fifo, |w| Ok(w.write_all(&data)?))?;
        let read = reader
            .join()
            .map_err(|_| anyhow::anyhow!("reader panicked"))??;
        assert_eq!(read, data);
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(
            &std::fs::symlink_metadata(&fifo)?.file_type()
        ));
        Ok(())
    }

    #[test]
    fn an_attribute_that_cannot_be_set_is_reported_and_the_file_kept() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out");
        let bad = Xattr::new(b"nonamespace".to_vec(), b"v".to_vec()).context("xattr")?;
        let attrs = FileAttrs {
            mode: Some(0o640),
            xattrs: vec![bad],
            ..FileAttrs::default()
        };
        let err =
            write_file_atomically_as(
                &path,
                &attrs,
                AtLink::Follow,
                |w| Ok(w.write_all(b"whole")?),
            )
            .err()
            .context("the attribute was set")?;
        let err = format!("{err:#}");
        assert!(
            err.contains("not whole") && err.contains("nonamespace"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path)?, b"whole");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            0o640
        );
        Ok(())
    }

    #[test]
    fn a_directory_is_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let err = write_file_atomically(dir.path(), |w| Ok(w.write_all(b"x")?))
            .err()
            .context("a directory was written as a file")?;
        assert!(err.to_string().contains("directory"), "{err}");
        Ok(())
    }

    /// What fills a file, boxed so that one closure can take either.
    type Fill<'a> = Box<dyn FnOnce(&mut dyn Write) -> Result<()> + 'a>;

    /// Names in `dir`.
    fn names_in(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A file is written with no name until it is whole where the file
    /// system allows it (this one does), and from the start under a
    /// `.seccs-partial-` name where it does not; either way it replaces
    /// its target with its bits kept, as one link, and a failed fill
    /// leaves nothing.
    #[test]
    fn a_file_is_named_once_whole_or_from_the_start_where_it_must_be() -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir()?;
        anyhow::ensure!(
            open_unnamed(dir.path())?.is_some(),
            "this file system makes no unnamed files"
        );
        for (naming, seen_while_written) in [(Naming::Late, 0), (Naming::Early, 1)] {
            let path = dir.path().join("out");
            std::fs::write(&path, b"old")?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640))?;
            let write = |fill: Fill<'_>| {
                write_beside_as(
                    &path,
                    &path,
                    &FileAttrs::default(),
                    Durability::Now,
                    naming,
                    fill,
                )
            };
            let mut seen = Vec::new();
            write(Box::new(|w| {
                w.write_all(&bytes(2 << 20))?;
                w.flush()?;
                seen = names_in(dir.path());
                Ok(())
            }))?
            .put_in_place()?;
            let partial: Vec<_> = seen
                .iter()
                .filter(|n| n.starts_with(crate::interrupt::PARTIAL_PREFIX))
                .collect();
            assert_eq!(partial.len(), seen_while_written, "{naming:?}: {seen:?}");
            assert_eq!(std::fs::read(&path)?, bytes(2 << 20), "{naming:?}");
            let meta = std::fs::metadata(&path)?;
            assert_eq!(meta.permissions().mode() & 0o777, 0o640, "{naming:?}");
            assert_eq!(meta.nlink(), 1, "{naming:?}");
            assert_eq!(names_in(dir.path()), ["out"], "{naming:?}");

            let failed = write(Box::new(|w| {
                w.write_all(&bytes(1 << 20))?;
                anyhow::bail!("input ended early")
            }));
            assert!(failed.is_err(), "{naming:?}");
            assert_eq!(names_in(dir.path()), ["out"], "{naming:?}");
            assert_eq!(std::fs::read(&path)?, bytes(2 << 20), "{naming:?}");
        }
        Ok(())
    }

    #[test]
    fn a_failed_fill_leaves_no_file() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out");
        let failed = write_file_atomically(&path, |w| {
            w.write_all(&bytes(1 << 20))?;
            anyhow::bail!("input ended early")
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        write_file_atomically(&path, |w| Ok(w.write_all(b"whole")?))?;
        assert_eq!(std::fs::read(&path)?, b"whole");
        Ok(())
    }
}
