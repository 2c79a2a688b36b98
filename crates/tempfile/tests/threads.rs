//! Files left open and idle hold no thread: a file's background I/O thread
//! ends once it has had nothing to do for a short while, and a later long
//! run starts a new one. A test binary of its own, so that no other test's
//! threads come and go while it counts this process's threads.

#![cfg(target_os = "linux")]

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use seccs_tempfile::EphemeralFile;

/// Files held open at once.
const FILES: usize = 200;
/// Bytes written to each: 16 blocks of 4 KiB, a long run (8 blocks or more)
/// that goes through the file's background thread.
const LEN: usize = 64 << 10;
/// How long to wait for idle threads to end: far longer than they idle.
const PATIENCE: Duration = Duration::from_secs(10);

fn threads() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Waits until the process has at most `limit` threads, or `PATIENCE` has
/// passed; returns the last count.
fn settle_to(limit: usize) -> io::Result<usize> {
    let start = Instant::now();
    loop {
        let n = threads()?;
        if n <= limit || start.elapsed() > PATIENCE {
            return Ok(n);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn contents(i: usize) -> Vec<u8> {
    (0..LEN)
        .map(|k| (k as u8).wrapping_mul(31) ^ (i as u8))
        .collect()
}

#[test]
fn idle_files_hold_no_threads_and_keep_their_contents() -> io::Result<()> {
    // Start what stays for the whole process (rayon's pool, which opens
    // long reads on all cores) before counting.
    {
        let mut warm = seccs_tempfile::tempfile()?;
        warm.write_all(&contents(0))?;
        warm.flush()?;
        warm.rewind()?;
        let mut back = Vec::new();
        warm.read_to_end(&mut back)?;
        assert_eq!(back, contents(0));
    }
    let before = threads()?;

    let mut files: Vec<EphemeralFile> = Vec::with_capacity(FILES);
    for i in 0..FILES {
        let mut f = seccs_tempfile::tempfile()?;
        f.write_all(&contents(i))?;
        f.flush()?;
        files.push(f);
    }
    let after_writes = settle_to(before)?;
    assert!(
        after_writes <= before,
        "{FILES} idle files written past the threshold: {after_writes} threads, {before} before"
    );

    for (i, f) in files.iter_mut().enumerate() {
        f.seek(SeekFrom::Start(0))?;
        let mut back = Vec::with_capacity(LEN);
        f.read_to_end(&mut back)?;
        assert!(back == contents(i), "file {i} read back different bytes");
    }
    let after_reads = settle_to(before)?;
    assert!(
        after_reads <= before,
        "{FILES} idle files read back: {after_reads} threads, {before} before"
    );

    // A later long run on an idle file starts a thread again, and works.
    for (i, f) in files.iter_mut().enumerate().take(10) {
        f.seek(SeekFrom::Start(LEN as u64))?;
        f.write_all(&contents(i + 1))?;
        f.flush()?;
        f.seek(SeekFrom::Start(0))?;
        let mut back = Vec::new();
        f.read_to_end(&mut back)?;
        assert!(
            back[..LEN] == contents(i) && back[LEN..] == contents(i + 1),
            "file {i} read back different bytes after it was idle"
        );
    }
    Ok(())
}
