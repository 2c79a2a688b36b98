//! A file's background I/O thread: it writes a long run once it is sealed
//! (write-behind) and reads the next run of a sequential reader while the
//! caller opens the current one (read-ahead). The kernel's copy into or out
//! of the page cache then overlaps the cryptography on the caller's thread,
//! on a second core, instead of following it.
//!
//! One job at a time, and the caller waits for its end before it submits
//! another or touches the file itself: the file's state on disk is always
//! what the caller last submitted, in order. `seccs bench tempfile` measured
//! the alternatives on 2 cores: sealing a whole run on both cores and then
//! writing it, or writing parts in order as a thread pool sealed them, were
//! no faster than sealing and writing on one thread (waking the pool and
//! the writer for every run cost what the overlap saved); a thread that
//! owns the copies and is handed whole runs is.
//!
//! The thread ends once it has been idle for [`IDLE`], and the next job
//! starts a new one, so that a file left open holds no thread: a process
//! that keeps many files open once had one thread for each. The job and
//! its result pass through one mutex, under which the thread also decides
//! to end, so a job is never handed to a thread that is ending.

use std::fs::File;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::positional::{read_full_at, write_all_at};

/// How long the thread waits for a next job before it ends. A sequential
/// reader or writer hands it a job every few milliseconds at most, and
/// starting a thread costs tens of microseconds: long enough that a run of
/// jobs keeps one thread, short enough that an idle file soon holds none.
pub(crate) const IDLE: Duration = Duration::from_millis(100);

/// What the thread is asked to do; the buffer travels with the job and
/// comes back in its [`Done`].
pub(crate) enum Job {
    /// Write all of `buf` at `offset`.
    Write { buf: Vec<u8>, offset: u64 },
    /// Fill `buf` from `offset` (short at the end of the file).
    Read { buf: Vec<u8>, offset: u64 },
}

/// A finished job: its buffer and the bytes written or read.
pub(crate) struct Done {
    pub(crate) buf: Vec<u8>,
    pub(crate) result: io::Result<usize>,
}

/// What the caller and the thread hand each other.
#[derive(Default)]
struct State {
    /// Submitted, not yet taken by the thread.
    job: Option<Job>,
    /// Finished, not yet waited for.
    done: Option<Done>,
    /// A thread takes jobs: set when one is started, cleared under the
    /// lock when it decides to end, so that a job is never handed to a
    /// thread that is ending.
    accepting: bool,
    /// Threads not yet ended, the one that takes jobs and any that is
    /// ending (it has closed its handle on the file when it leaves here).
    threads: usize,
    /// The file is being dropped: the thread ends once it has no job.
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still
        // whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The file's background thread (started when needed, ended when idle),
/// and whether a job is out.
pub(crate) struct Background {
    file: Arc<File>,
    shared: Arc<Shared>,
    busy: bool,
}

impl Background {
    /// Background I/O for `file`; no thread runs until the first job.
    pub(crate) fn new(file: Arc<File>) -> Self {
        Self {
            file,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
            busy: false,
        }
    }

    /// Hands `job` to the thread, starting one if none runs. The previous
    /// job must have been waited for. If no thread can be started, the job
    /// comes back, for the caller to do itself.
    pub(crate) fn submit(&mut self, job: Job) -> Result<(), Job> {
        debug_assert!(!self.busy, "one job at a time");
        let mut state = self.shared.lock();
        if !state.accepting {
            let shared = Arc::clone(&self.shared);
            let file = Arc::clone(&self.file);
            let started = std::thread::Builder::new()
                .name("seccs-tempfile-io".into())
                .spawn(move || {
                    // Declared first, dropped last: the thread's handle on
                    // the file is closed before it counts itself ended.
                    let _ending = Ending(Arc::clone(&shared));
                    serve(&shared, file);
                });
            // Detached: it ends on its own, and `Drop` waits for that.
            if started.is_err() {
                return Err(job);
            }
            state.accepting = true;
            state.threads += 1;
        }
        state.job = Some(job);
        drop(state);
        self.shared.changed.notify_all();
        self.busy = true;
        Ok(())
    }

    /// Waits for the job that is out, if any, and returns it.
    pub(crate) fn wait(&mut self) -> Option<Done> {
        if !self.busy {
            return None;
        }
        self.busy = false;
        let state = self.shared.lock();
        let mut state = self
            .shared
            .changed
            .wait_while(state, |s| s.done.is_none() && s.accepting)
            .unwrap_or_else(PoisonError::into_inner);
        Some(state.done.take().unwrap_or_else(|| Done {
            buf: Vec::new(),
            result: Err(thread_gone()),
        }))
    }
}

/// The thread's loop: does each job it is handed, and ends once it has had
/// none for [`IDLE`] or the file is being dropped.
fn serve(shared: &Shared, file: Arc<File>) {
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.job.take() {
            drop(state);
            let done = match job {
                Job::Write { buf, offset } => {
                    let result = write_all_at(&file, &buf, offset).map(|()| buf.len());
                    Done { buf, result }
                }
                Job::Read { mut buf, offset } => {
                    let result = read_full_at(&file, &mut buf, offset);
                    Done { buf, result }
                }
            };
            state = shared.lock();
            state.done = Some(done);
            shared.changed.notify_all();
            continue;
        }
        if state.closing {
            state.accepting = false;
            return;
        }
        let (next, waited) = shared
            .changed
            .wait_timeout_while(state, IDLE, |s| s.job.is_none() && !s.closing)
            .unwrap_or_else(PoisonError::into_inner);
        state = next;
        // Under the lock: a job submitted from here on starts a new thread.
        if waited.timed_out() && state.job.is_none() {
            state.accepting = false;
            return;
        }
    }
}

/// Counts the thread ended when it returns or panics, and wakes whoever
/// waits for it.
struct Ending(Arc<Shared>);

impl Drop for Ending {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.threads -= 1;
        // A thread that panics does so in a job, outside the lock, while
        // it is the one that takes jobs: its job's waiter must not wait
        // for a result that will never come.
        if std::thread::panicking() {
            state.accepting = false;
        }
        drop(state);
        self.0.changed.notify_all();
    }
}

fn thread_gone() -> io::Error {
    io::Error::other("the file's background I/O thread ended")
}

impl Drop for Background {
    /// Lets the job that is out finish, then waits for the thread to end:
    /// nothing writes to the file after its handle is gone.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.changed.notify_all();
        // A panic there has nothing left to report to: the job's result
        // was never asked for.
        let _ended = self
            .shared
            .changed
            .wait_while(state, |s| s.threads > 0)
            .unwrap_or_else(PoisonError::into_inner);
    }
}
