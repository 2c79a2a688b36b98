//! Temporary output files that an interrupt (SIGINT, SIGTERM, SIGHUP)
//! removes before the process exits.
//!
//! Output is written to a file beside its target and renamed into place
//! only once it is whole (see [`crate::output`]). Where the file system
//! allows it, the file has no name while it is written (`O_TMPFILE`): a
//! process killed half way, even by SIGKILL, leaves nothing, since the
//! kernel frees a file that no name holds. Once whole and durable it is
//! linked at its target, or, over an existing file, under a temporary
//! name (`.seccs-partial-…`) renamed over it at once; where unnamed files
//! cannot be made it has that name from the start. A process stopped by
//! Ctrl-C or `kill` while the name exists would leave that file behind:
//! plaintext a later reader could mistake for a result, and clutter
//! nothing else cleans up. A named file is registered; the first
//! registration starts a thread that waits for those signals, removes
//! every registered file, and exits with 128 + the signal's number, as a
//! shell reports a process the signal killed.
//! Processes that never write such a file (the servers, with their own
//! graceful shutdown) never install it.
//!
//! A store on a network backend holds a writer lease there (see
//! `seccs_backends`); a process killed by a signal would leave it to expire
//! (30 s) and keep the store locked meanwhile. Such a backend is registered
//! too, and the handler lets its lease go before the process exits.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use seccs_store::backend::Backend;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Files being written, removed on an interrupt.
static PENDING: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
/// Whether the handler thread is running (or could not be started).
static HANDLER: OnceLock<()> = OnceLock::new();
/// Backends whose writer lease an interrupt lets go.
static BACKENDS: Mutex<Vec<Weak<dyn Backend>>> = Mutex::new(Vec::new());

/// Lets `backend`'s writer lease go if the process is interrupted while it
/// is open (see the module docs).
pub fn release_on_interrupt(backend: &Arc<dyn Backend>) {
    HANDLER.get_or_init(start_handler);
    BACKENDS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(backend));
}

/// A temporary file registered for removal on an interrupt, for as long as
/// this lives: drop it once the file is renamed into place or removed.
#[must_use = "the file stays registered only while this lives"]
pub struct Registered(PathBuf);

impl Drop for Registered {
    fn drop(&mut self) {
        pending().remove(&self.0);
    }
}

/// How the names of files being written start: `.seccs-partial-` and
/// random characters.
pub const PARTIAL_PREFIX: &str = ".seccs-partial-";

/// Creates a temporary file in `dir` and registers it, in one step under
/// the lock the handler takes: an interrupt either comes before the file
/// exists or finds it registered, and once the handler has begun no new
/// file is made.
pub fn temp_file_in(dir: &Path) -> std::io::Result<(tempfile::NamedTempFile, Registered)> {
    HANDLER.get_or_init(start_handler);
    let mut pending = pending();
    // Named so that what a SIGKILL leaves is told for what it is. Opened
    // here, as `tempfile` opens its own (new, 0600), so that an error is
    // the system's alone: `tempfile`'s names its random path, which the
    // caller's message would show as if the user had given it.
    let tmp = tempfile::Builder::new()
        .prefix(PARTIAL_PREFIX)
        .make_in(dir, |path| {
            let mut options = std::fs::OpenOptions::new();
            options.read(true).write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(path)
        })?;
    pending.insert(tmp.path().to_owned());
    let registered = Registered(tmp.path().to_owned());
    Ok((tmp, registered))
}

/// Starts watching for interrupts, as a registration does, for a process
/// about to write a file with no name: an interrupt then ends it as one
/// that writes a named file (128 + the signal's number, a network
/// backend's lease let go), though it has nothing to remove.
pub fn watch() {
    HANDLER.get_or_init(start_handler);
}

/// Gives `file`, an unnamed file open in `dir` (made with `O_TMPFILE`), a
/// temporary name there, and registers it, in one step under the lock the
/// handler takes (as [`temp_file_in`]). Returns the name, as `dir` gives
/// it: a relative `dir` stays relative, so no directory above the working
/// one needs to be searchable.
///
/// The name is the process's id and a count, not random: it is linked
/// (`linkat` never follows nor replaces what is at the new name), so a
/// name someone else made first is passed over, never written through.
pub fn name_in(dir: &Path, file: &std::fs::File) -> std::io::Result<(PathBuf, Registered)> {
    linked_in(dir, |path| crate::output::link_unnamed(file, path))
}

/// Makes a hard link to `first` under a temporary name in `dir`, and
/// registers it, as [`name_in`] names an unnamed file: so that a link is
/// made beside its target and renamed over it, and what is at the target
/// stays there until the link is made.
pub fn hard_link_in(dir: &Path, first: &Path) -> std::io::Result<(PathBuf, Registered)> {
    linked_in(dir, |path| std::fs::hard_link(first, path))
}

/// Links something at a temporary name in `dir` with `link`, which must
/// fail with `AlreadyExists` where a name is taken, and registers it.
fn linked_in(
    dir: &Path,
    link: impl Fn(&Path) -> std::io::Result<()>,
) -> std::io::Result<(PathBuf, Registered)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NAMED: AtomicU64 = AtomicU64::new(0);
    HANDLER.get_or_init(start_handler);
    let mut pending = pending();
    for _ in 0..128 {
        let n = NAMED.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{PARTIAL_PREFIX}{:x}-{n:x}", std::process::id()));
        match link(&path) {
            Ok(()) => {
                pending.insert(path.clone());
                let registered = Registered(path.clone());
                return Ok((path, registered));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "128 temporary names in a row were taken",
    ))
}

/// Makes a temporary file with `make` (a library that creates its own)
/// and registers the path `path_of` gives, in one step under the lock the
/// handler takes, as [`temp_file_in`] does: an interrupt either comes
/// before the file exists or finds it registered.
pub fn make_registered<T, E>(
    make: impl FnOnce() -> Result<T, E>,
    path_of: impl FnOnce(&T) -> &Path,
) -> Result<(T, Registered), E> {
    HANDLER.get_or_init(start_handler);
    let mut pending = pending();
    let made = make()?;
    let path = path_of(&made).to_owned();
    pending.insert(path.clone());
    Ok((made, Registered(path)))
}

fn pending() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    // The set stays valid whatever a panicking holder was doing.
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

fn start_handler() {
    // A signal the process was started with ignored (`nohup` ignores
    // SIGHUP; a shell ignores SIGINT in background jobs) stays ignored.
    let ignored = seccs_core::signals::ignored();
    let watched: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|s| !ignored.contains(s))
        .collect();
    if watched.is_empty() {
        return;
    }
    // Without the handler, an interrupt leaves the file as before: worth a
    // warning, not a failed command.
    let mut signals = match Signals::new(&watched) {
        Ok(signals) => signals,
        Err(e) => {
            errln!("seccs: warning: cannot watch for interrupts ({e})");
            return;
        }
    };
    let started = std::thread::Builder::new()
        .name("seccs-interrupt".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                // Held until the process ends: no file is made or renamed
                // under a registration after this point.
                let pending = pending();
                for path in pending.iter() {
                    let _ = std::fs::remove_file(path);
                }
                let backends = BACKENDS.lock().unwrap_or_else(|p| p.into_inner());
                for backend in backends.iter().filter_map(Weak::upgrade) {
                    backend.release();
                }
                std::process::exit(128 + signal);
            }
        });
    if let Err(e) = started {
        errln!("seccs: warning: cannot watch for interrupts ({e})");
    }
}

#[cfg(test)]
mod partial_name_tests {
    use super::*;

    #[test]
    fn a_file_being_written_is_named_as_seccs_partial() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let (tmp, _registered) = temp_file_in(dir.path())?;
        let name = tmp
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        assert!(name.starts_with(PARTIAL_PREFIX), "{name}");
        Ok(())
    }
}
