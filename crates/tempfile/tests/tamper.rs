//! Every way of changing the file on disk makes the next read of the affected
//! block fail with `InvalidData` and `Error::Tampered`, never wrong data.

use std::fs::OpenOptions;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use seccs_tempfile::format::BLOCK_OVERHEAD;
use seccs_tempfile::{Builder, Error, FileKey, KeySize, NamedEphemeralFile};

const BS: usize = 4096;
const SLOT: u64 = (BS + BLOCK_OVERHEAD) as u64;
const BLOCKS: usize = 8;

fn content() -> Vec<u8> {
    (0..BS * BLOCKS).map(|i| (i % 251) as u8).collect()
}

/// A named file of 8 written blocks, with its cache flushed.
fn written(key: Option<FileKey>) -> io::Result<NamedEphemeralFile> {
    let mut b = Builder::new();
    b.block_size(BS);
    if let Some(k) = key {
        b.key(k);
    }
    let mut f = b.tempfile()?;
    f.write_all(&content())?;
    f.flush()?;
    Ok(f)
}

fn raw(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn read_slot(path: &Path, block: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; SLOT as usize];
    raw(path)?.read_exact_at(&mut buf, block * SLOT)?;
    Ok(buf)
}

fn write_slot(path: &Path, block: u64, slot: &[u8]) -> io::Result<()> {
    raw(path)?.write_all_at(slot, block * SLOT)
}

/// Asserts that reading all of `f` from the start fails as tampering.
fn assert_read_fails<R: Read + Seek>(f: &mut R, block: u64) -> io::Result<()> {
    f.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    let err = f
        .read_to_end(&mut out)
        .expect_err("a read of a tampered file must fail");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("failed authentication"), "{err}");
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<Error>())
        .expect("the inner error is the crate's Error");
    assert!(
        matches!(inner, Error::Tampered { block: b } if *b == block),
        "{inner:?}"
    );
    assert!(
        out.len() <= block as usize * BS,
        "no byte of the tampered block is returned"
    );
    Ok(())
}

#[test]
fn untouched_file_reads_back() -> io::Result<()> {
    let mut f = written(None)?;
    f.seek(SeekFrom::Start(0))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    assert_eq!(out, content());
    Ok(())
}

#[test]
fn flipping_any_bit_of_a_slot_fails_the_next_read() -> io::Result<()> {
    // A bit of the nonce, of the ciphertext and of the tag.
    for at in [0u64, 5, 12, 100, SLOT - 16, SLOT - 1] {
        let mut f = written(None)?;
        let mut slot = read_slot(f.path(), 3)?;
        slot[at as usize] ^= 0x10;
        write_slot(f.path(), 3, &slot)?;
        assert_read_fails(&mut f, 3)?;
    }
    Ok(())
}

#[test]
fn swapping_two_blocks_fails_the_next_read() -> io::Result<()> {
    let mut f = written(None)?;
    let (a, b) = (read_slot(f.path(), 1)?, read_slot(f.path(), 2)?);
    write_slot(f.path(), 1, &b)?;
    write_slot(f.path(), 2, &a)?;
    assert_read_fails(&mut f, 1)
}

#[test]
fn replaying_an_older_version_of_a_block_fails_the_next_read() -> io::Result<()> {
    let mut f = written(None)?;
    let old = read_slot(f.path(), 4)?;
    f.seek(SeekFrom::Start(4 * BS as u64))?;
    f.write_all(&[0xee; BS])?;
    f.flush()?;
    write_slot(f.path(), 4, &old)?;
    assert_read_fails(&mut f, 4)
}

#[test]
fn replaying_a_block_cut_off_by_set_len_fails_after_regrowth() -> io::Result<()> {
    let mut f = written(None)?;
    let old = read_slot(f.path(), 6)?;
    f.as_file_mut().set_len(2 * BS as u64)?;
    f.seek(SeekFrom::Start(6 * BS as u64))?;
    f.write_all(&[0x11; BS])?;
    f.flush()?;
    write_slot(f.path(), 6, &old)?;
    assert_read_fails(&mut f, 6)
}

#[test]
fn copying_a_block_from_another_file_under_the_same_key_fails() -> io::Result<()> {
    let key = FileKey::generate(KeySize::Aes256)?;
    let mut f = written(Some(key.clone()))?;
    let other = written(Some(key))?;
    write_slot(f.path(), 2, &read_slot(other.path(), 2)?)?;
    assert_read_fails(&mut f, 2)
}

#[test]
fn truncating_the_file_on_disk_fails_the_next_read() -> io::Result<()> {
    // Cut inside the last slot, and at a slot boundary.
    for cut in [BLOCKS as u64 * SLOT - 1, (BLOCKS as u64 - 2) * SLOT] {
        let mut f = written(None)?;
        raw(f.path())?.set_len(cut)?;
        assert_read_fails(&mut f, cut / SLOT)?;
    }
    Ok(())
}

#[test]
fn appending_to_the_file_on_disk_fails_the_next_read() -> io::Result<()> {
    for extra in [1usize, SLOT as usize] {
        let mut f = written(None)?;
        let slot = read_slot(f.path(), BLOCKS as u64 - 1)?;
        raw(f.path())?.write_all_at(&slot[..extra], BLOCKS as u64 * SLOT)?;
        assert_read_fails(&mut f, BLOCKS as u64)?;
    }
    Ok(())
}

#[cfg(target_os = "linux")]
#[test]
fn unlinked_file_detects_a_flipped_bit_through_proc() -> io::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};

    let mut f = Builder::new().block_size(BS).unnamed()?;
    f.write_all(&content())?;
    f.flush()?;
    let path = format!("/proc/self/fd/{}", f.as_fd().as_raw_fd());
    let disk = raw(Path::new(&path))?;
    let mut byte = [0u8; 1];
    disk.read_exact_at(&mut byte, 5 * SLOT + 40)?;
    disk.write_all_at(&[byte[0] ^ 1], 5 * SLOT + 40)?;
    assert_read_fails(&mut f, 5)
}

#[test]
fn persisted_file_detects_a_flipped_bit() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = written(None)?;
    let kept = dir.path().join("kept");
    let key = f.persist(&kept)?;
    let mut slot = read_slot(&kept, 7)?;
    slot[30] ^= 4;
    write_slot(&kept, 7, &slot)?;
    let mut back = seccs_tempfile::EphemeralFile::open_persisted(&kept, &key)?;
    assert_read_fails(&mut back, 7)
}

/// A persisted file whose footer names a cipher suite this build does not
/// know is said to, not "not a persisted seccs ephemeral file".
#[test]
fn a_persisted_file_whose_footer_names_an_unknown_suite_says_so() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let f = written(None)?;
    let kept = dir.path().join("kept");
    let key = f.persist(&kept)?;
    let disk = raw(&kept)?;
    let size = disk.metadata()?.len();
    let mut total = [0u8; 8];
    disk.read_exact_at(&mut total, size - 8)?;
    // The footer's suite byte follows its 8-byte magic and version byte.
    let suite_at = size - u64::from_be_bytes(total) + 9;
    disk.write_all_at(&[7], suite_at)?;
    let err =
        seccs_tempfile::EphemeralFile::open_persisted(&kept, &key).expect_err("an unknown suite");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<Error>()),
            Some(Error::UnknownSuite(7))
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("footer names cipher suite 7"),
        "{err}"
    );
    Ok(())
}

/// A file whose last 8 bytes claim a footer larger than the file could hold
/// is refused before the claim is allocated: a sparse 1 TiB file claiming a
/// footer of nearly all of it used to abort the process on the allocation.
#[test]
fn a_huge_claimed_footer_is_refused_before_it_is_read() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let key = FileKey::generate(KeySize::Aes256)?;
    for size in [3u64 << 30, 1 << 40] {
        let path = dir.path().join(format!("sparse-{size}"));
        let f = std::fs::File::create(&path)?;
        f.set_len(size)?;
        for claimed in [size, size - 16] {
            f.write_all_at(&claimed.to_be_bytes(), size - 8)?;
            let err = seccs_tempfile::EphemeralFile::open_persisted(&path, &key)
                .expect_err("not a persisted file");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{size} {claimed}");
            assert!(
                matches!(
                    err.get_ref().and_then(|e| e.downcast_ref::<Error>()),
                    Some(Error::UnknownFormat)
                ),
                "{size} {claimed}: {err}"
            );
        }
    }
    Ok(())
}
