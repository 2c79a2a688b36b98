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

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::positional::{read_full_at, write_all_at};

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

/// The thread, and whether a job is out.
pub(crate) struct Background {
    jobs: Option<Sender<Job>>,
    /// In a mutex only so that the file is `Sync`, as `std::fs::File` is
    /// (a `Receiver` is not): it is reached through `&mut self`, never
    /// locked.
    done: Mutex<Receiver<Done>>,
    thread: Option<JoinHandle<()>>,
    busy: bool,
}

impl Background {
    /// Starts the thread for `file`.
    pub(crate) fn spawn(file: Arc<File>) -> io::Result<Self> {
        let (jobs, inbox) = channel::<Job>();
        let (outbox, done) = channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("seccs-tempfile-io".into())
            .spawn(move || {
                for job in inbox {
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
                    if outbox.send(done).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            done: Mutex::new(done),
            thread: Some(thread),
            busy: false,
        })
    }

    /// Hands `job` to the thread. The previous job must have been waited
    /// for.
    pub(crate) fn submit(&mut self, job: Job) -> io::Result<()> {
        debug_assert!(!self.busy, "one job at a time");
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(thread_gone());
        }
        self.busy = true;
        Ok(())
    }

    /// Waits for the job that is out, if any, and returns it.
    pub(crate) fn wait(&mut self) -> Option<Done> {
        if !self.busy {
            return None;
        }
        self.busy = false;
        let done = self.done.get_mut().unwrap_or_else(PoisonError::into_inner);
        Some(done.recv().unwrap_or_else(|_| Done {
            buf: Vec::new(),
            result: Err(thread_gone()),
        }))
    }
}

fn thread_gone() -> io::Error {
    io::Error::other("the file's background I/O thread ended")
}

impl Drop for Background {
    /// Lets the job that is out finish, then ends the thread: nothing
    /// writes to the file after its handle is gone.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            // A panic there has nothing left to report to: the job's
            // result was never asked for.
            let _ = thread.join();
        }
    }
}
