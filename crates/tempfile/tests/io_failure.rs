//! Writes that fail part way (the file size limit, `RLIMIT_FSIZE`, lowered
//! in the middle of a test) must never make the file return old data or
//! report sound data as tampered.
//!
//! Each test runs again in a child process of its own with SIGXFSZ ignored
//! (an ignored signal stays ignored across exec), so that a write past the
//! limit fails with EFBIG instead of killing it, and so that lowering the
//! limit touches no other test. The child sets its limit with util-linux's
//! `prlimit`, in bytes.

#![cfg(target_os = "linux")]

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::process::{Command, Stdio};

use seccs_tempfile::format::BLOCK_OVERHEAD;
use seccs_tempfile::{Builder, EphemeralFile, NamedEphemeralFile};

/// Set in the child to the name of the test it runs.
const CHILD_ENV: &str = "SECCS_TEMPFILE_LIMITED_CHILD";

const BS: usize = 4096;
const SLOT: usize = BS + BLOCK_OVERHEAD;

/// `true` in the child, which runs the test's body; in the parent, runs
/// test `name` in the child and returns `false` once it passed.
fn in_child(name: &str) -> io::Result<bool> {
    if std::env::var(CHILD_ENV).is_ok_and(|n| n == name) {
        return Ok(true);
    }
    let output = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec \"$0\" \"$1\" --exact --nocapture --test-threads=1",
        ])
        .arg(std::env::current_exe()?)
        .arg(name)
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !stdout.contains("1 passed") {
        return Err(io::Error::other(format!(
            "{name} failed in the child ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(false)
}

/// Sets this process's file size limit (soft) to `bytes`, or lifts it.
fn limit_file_size(bytes: Option<usize>) -> io::Result<()> {
    let limit = bytes.map_or("unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--fsize={limit}:"))
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!("prlimit failed: {status}")));
    }
    Ok(())
}

fn read_block(f: &mut EphemeralFile, block: u64) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(block * BS as u64))?;
    let mut out = vec![0; BS];
    f.read_exact(&mut out)?;
    Ok(out)
}

/// A write-back that fails after it sealed blocks used versions up: the
/// block written again afterwards gets a version of its own, so the slot
/// the failed write left on disk cannot be put back in its place. The
/// versions were once handed out again, and the old slot read back as
/// valid data.
#[test]
fn a_failed_write_back_never_reuses_its_versions() -> io::Result<()> {
    if !in_child("a_failed_write_back_never_reuses_its_versions")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut named = Builder::new().block_size(BS).tempfile_in(dir.path())?;
    let disk = OpenOptions::new()
        .read(true)
        .write(true)
        .open(named.path())?;
    let f = named.as_file_mut();
    f.write_all(&vec![b'A'; 4 * BS])?;
    // Room for slot 0 and part of slot 1.
    limit_file_size(Some(2 * BS))?;
    let flushed = f.flush();
    limit_file_size(None)?;
    assert!(flushed.is_err(), "the write-back had to hit the limit");
    let mut saved = vec![0u8; SLOT];
    disk.read_exact_at(&mut saved, 0)?;

    // The caller keeps one block and writes it again.
    f.set_len(BS as u64)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&vec![b'B'; BS])?;
    f.flush()?;
    assert_eq!(read_block(f, 0)?, vec![b'B'; BS]);

    // Whoever can write the file puts the slot of the failed write back.
    disk.write_all_at(&saved, 0)?;
    let back = read_block(f, 0);
    assert!(
        back.as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::InvalidData),
        "a rolled-back block was read back: {:?}",
        back.map(|b| b[0] as char)
    );
    Ok(())
}

/// A persist whose footer cannot be written hands the file back without
/// the part of the footer that reached the disk: its blocks read back as
/// written. The partial footer once stayed after the last slot, and every
/// read of the last block reported tampering.
#[test]
fn a_persist_whose_footer_fails_hands_back_a_readable_file() -> io::Result<()> {
    if !in_child("a_persist_whose_footer_fails_hands_back_a_readable_file")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut named = Builder::new().block_size(BS).tempfile_in(dir.path())?;
    let blocks = 4;
    named.write_all(&vec![7u8; blocks * BS])?;
    named.flush()?;
    // Room for the slots and the first bytes of the footer.
    limit_file_size(Some(blocks * SLOT + 10))?;
    let persisted = named.persist(dir.path().join("kept"));
    limit_file_size(None)?;
    let mut named: NamedEphemeralFile = match persisted {
        Ok(_) => return Err(io::Error::other("the footer had to hit the limit")),
        Err(e) => e.into(),
    };
    assert_eq!(
        std::fs::metadata(named.path())?.len(),
        (blocks * SLOT) as u64
    );
    for block in 0..blocks as u64 {
        assert_eq!(read_block(named.as_file_mut(), block)?, vec![7u8; BS]);
    }
    Ok(())
}

/// A write past what the file system may hold fails in that call and
/// changes nothing: the file reads, flushes and truncates as before. It
/// once returned `Ok`, and the refusal came from later, unrelated calls
/// (reads at offset 0 failed with "File too large").
#[test]
fn a_write_past_the_file_size_limit_fails_in_that_call() -> io::Result<()> {
    if !in_child("a_write_past_the_file_size_limit_fails_in_that_call")? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let mut f = Builder::new().block_size(BS).unnamed_in(dir.path())?;
    f.write_all(&vec![b'A'; 3 * BS])?;
    f.flush()?;
    limit_file_size(Some(64 * SLOT))?;
    f.seek(SeekFrom::Start(1 << 20))?;
    let far = f.write(b"x");
    // A small write past the end within the limit still works.
    f.seek(SeekFrom::Start(3 * BS as u64 + 10))?;
    let near = f.write(b"y");
    limit_file_size(None)?;
    assert!(far.is_err(), "a write past the limit returned {far:?}");
    assert_eq!(near?, 1);
    assert_eq!(f.len(), 3 * BS as u64 + 11);
    for block in 0..3 {
        assert_eq!(read_block(&mut f, block)?, vec![b'A'; BS]);
    }
    f.flush()?;
    f.set_len(100)?;
    assert_eq!(f.len(), 100);
    f.seek(SeekFrom::Start(0))?;
    let mut back = Vec::new();
    f.read_to_end(&mut back)?;
    assert_eq!(back, vec![b'A'; 100]);
    Ok(())
}

/// After a write-back fails part way, blocks already on disk read back as
/// written, before and after the caller cuts the file back: the failed
/// write once left bytes past the slots the file counted, and the check
/// for appended bytes reported the sound last block as tampered.
#[test]
fn a_failed_write_back_never_makes_sound_blocks_read_as_tampered() -> io::Result<()> {
    if !in_child("a_failed_write_back_never_makes_sound_blocks_read_as_tampered")? {
        return Ok(());
    }
    // The limit lowered before the write, then between the write and the
    // flush.
    for limit_before_write in [true, false] {
        let dir = tempfile::tempdir()?;
        let mut f = Builder::new().block_size(BS).unnamed_in(dir.path())?;
        f.write_all(&vec![b'A'; BS])?;
        f.flush()?;
        if limit_before_write {
            limit_file_size(Some(2 * BS))?;
        }
        let written = f.write_all(&vec![b'B'; 3 * BS]);
        if !limit_before_write {
            limit_file_size(Some(2 * BS))?;
        }
        let flushed = f.flush();
        limit_file_size(None)?;
        assert!(
            written.is_err() || flushed.is_err(),
            "nothing hit the limit"
        );
        assert_eq!(read_block(&mut f, 0)?, vec![b'A'; BS]);
        f.set_len(BS as u64)?;
        assert_eq!(read_block(&mut f, 0)?, vec![b'A'; BS]);
    }
    Ok(())
}
