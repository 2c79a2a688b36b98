//! What is on disk: nothing visible, nothing readable, nothing linkable
//! between files; and the named, persisted and spooled variants.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};

use seccs_tempfile::{Builder, EphemeralFile, Error, FileKey, KeySize, NamedEphemeralFile};

/// Text without repeats, so every 16-byte window is distinctive.
fn known_plaintext(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(format!("record {i:>10} of the secret;").as_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

const KEY_SIZES: [KeySize; 3] = [KeySize::Aes128, KeySize::Aes192, KeySize::Aes256];

#[cfg(target_os = "linux")]
#[test]
fn unnamed_file_is_not_visible_in_its_directory() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut f = seccs_tempfile::tempfile_in(dir.path())?;
    f.write_all(b"hidden")?;
    f.sync_all()?;
    let entries: Vec<_> = std::fs::read_dir(dir.path())?.collect::<Result<_, _>>()?;
    assert!(entries.is_empty(), "{entries:?}");
    assert_eq!(f.len(), 6);
    Ok(())
}

#[cfg(unix)]
#[test]
fn named_file_has_mode_0600_and_is_removed_on_drop() -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir()?;
    let f = Builder::new()
        .prefix("pre-")
        .suffix(".bin")
        .rand_bytes(10)
        .tempfile_in(dir.path())?;
    let path = f.path().to_owned();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a UTF-8 name");
    assert!(name.starts_with("pre-") && name.ends_with(".bin") && name.len() == 18);
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    drop(f);
    assert!(!path.exists());
    Ok(())
}

#[test]
fn ciphertext_contains_no_16_byte_window_of_the_plaintext() -> io::Result<()> {
    let plain = known_plaintext(300 << 10);
    let windows: HashSet<&[u8]> = plain.windows(16).collect();
    for ks in KEY_SIZES {
        let mut f = Builder::new().key_size(ks).unnamed()?;
        f.write_all(&plain)?;
        let raw = f.read_ciphertext()?;
        assert!(raw.len() > plain.len());
        let leaked = raw.windows(16).filter(|w| windows.contains(w)).count();
        assert_eq!(leaked, 0, "{ks:?}");
    }
    Ok(())
}

/// How many positions two byte strings share the same byte at.
fn equal_positions(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).filter(|(x, y)| x == y).count()
}

#[test]
fn same_content_under_the_same_key_gives_unrelated_ciphertexts() -> io::Result<()> {
    let plain = known_plaintext(64 << 10);
    let key = FileKey::generate(KeySize::Aes256)?;
    let mut raws = Vec::new();
    for _ in 0..2 {
        let mut f = Builder::new().key(key.clone()).unnamed()?;
        f.write_all(&plain)?;
        raws.push(f.read_ciphertext()?);
    }
    assert_eq!(raws[0].len(), raws[1].len());
    // Unrelated bytes agree at about 1 position in 256.
    let same = equal_positions(&raws[0], &raws[1]);
    assert!(same < raws[0].len() / 100, "{same} equal bytes");
    let first: HashSet<&[u8]> = raws[0].windows(16).collect();
    assert!(!raws[1].windows(16).any(|w| first.contains(w)));
    Ok(())
}

#[test]
fn rewriting_a_block_with_the_same_bytes_changes_its_ciphertext() -> io::Result<()> {
    let mut f = seccs_tempfile::tempfile()?;
    f.write_all(&[7u8; 4096])?;
    let before = f.read_ciphertext()?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&[7u8; 4096])?;
    let after = f.read_ciphertext()?;
    assert!(equal_positions(&before, &after) < before.len() / 100);
    Ok(())
}

#[test]
fn seeking_past_the_end_and_writing_leaves_zeros() -> io::Result<()> {
    let mut f = seccs_tempfile::tempfile()?;
    f.write_all(b"head")?;
    f.seek(SeekFrom::Start(100_000))?;
    f.write_all(b"tail")?;
    assert_eq!(f.metadata()?.len(), 100_004);
    f.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    f.read_to_end(&mut all)?;
    assert_eq!(&all[..4], b"head");
    assert!(all[4..100_000].iter().all(|b| *b == 0));
    assert_eq!(&all[100_000..], b"tail");
    // Holes are never written: only the two blocks touched are on disk.
    assert!(f.read_ciphertext()?.len() < 100_000 + 2 * 4096);
    Ok(())
}

#[test]
fn set_len_truncates_then_grows_with_zeros() -> io::Result<()> {
    let mut f = seccs_tempfile::tempfile()?;
    f.write_all(&[9u8; 10_000])?;
    f.set_len(5_000)?;
    f.set_len(12_000)?;
    f.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    f.read_to_end(&mut all)?;
    assert_eq!(all.len(), 12_000);
    assert!(all[..5_000].iter().all(|b| *b == 9));
    assert!(all[5_000..].iter().all(|b| *b == 0));
    Ok(())
}

#[test]
fn persisted_file_reopens_with_its_key_only() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    for ks in KEY_SIZES {
        let plain = known_plaintext(50_000);
        let mut f = Builder::new()
            .key_size(ks)
            .block_size(1024)
            .tempfile_in(dir.path())?;
        f.write_all(&plain)?;
        let kept = dir.path().join(format!("kept-{ks:?}"));
        let key = f.persist(&kept)?;
        assert_eq!(key.size(), ks);

        let mut back = EphemeralFile::open_persisted(&kept, &key)?;
        assert_eq!(back.len(), plain.len() as u64);
        let mut all = Vec::new();
        back.read_to_end(&mut all)?;
        assert_eq!(all, plain);
        let refused = back
            .write(b"x")
            .expect_err("a persisted file opens read-only");
        assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied);

        let wrong = FileKey::generate(ks)?;
        let err = EphemeralFile::open_persisted(&kept, &wrong).expect_err("wrong key");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            err.get_ref().and_then(|e| e.downcast_ref::<Error>()),
            Some(Error::FooterTampered)
        ));
    }
    Ok(())
}

#[test]
fn persisted_file_with_a_callers_key_reopens_with_that_key() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let core_key = seccs_core::SecretKey::generate().map_err(io::Error::other)?;
    let key = FileKey::derived(&core_key, b"spool of job 7");
    // Its own key: not the root's bytes, and another purpose gives another.
    assert_ne!(key.expose_secret(), core_key.expose_secret());
    assert_ne!(key, FileKey::derived(&core_key, b"spool of job 8"));
    assert_eq!(key, FileKey::derived(&core_key, b"spool of job 7"));
    let mut f = Builder::new().key(key.clone()).tempfile_in(dir.path())?;
    f.write_all(b"under the caller's key")?;
    let returned = f.persist(dir.path().join("k"))?;
    assert_eq!(returned, key);
    let mut s = String::new();
    EphemeralFile::open_persisted(dir.path().join("k"), &key)?.read_to_string(&mut s)?;
    assert_eq!(s, "under the caller's key");
    Ok(())
}

#[test]
fn plain_file_is_not_a_persisted_file() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("plain");
    std::fs::write(&path, known_plaintext(1000))?;
    let key = FileKey::generate(KeySize::Aes256)?;
    let err = EphemeralFile::open_persisted(&path, &key).expect_err("not our format");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    Ok(())
}

#[test]
fn persist_to_a_missing_directory_gives_the_file_back() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut f = NamedEphemeralFile::new_in(dir.path())?;
    f.write_all(b"still here")?;
    let err = f
        .persist(dir.path().join("no/such/dir/x"))
        .expect_err("the target directory does not exist");
    let mut f = err.file;
    f.write_all(b", and writable")?;
    f.seek(SeekFrom::Start(0))?;
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    assert_eq!(s, "still here, and writable");
    Ok(())
}

#[test]
fn spooled_file_crosses_its_threshold_without_losing_data() -> io::Result<()> {
    let plain = known_plaintext(200_000);
    let mut f = seccs_tempfile::spooled_tempfile(70_000);
    for chunk in plain.chunks(9_999) {
        f.write_all(chunk)?;
    }
    assert!(f.is_rolled());
    f.seek(SeekFrom::Start(0))?;
    let mut all = Vec::new();
    f.read_to_end(&mut all)?;
    assert_eq!(all, plain);
    let raw = f
        .as_file_mut()
        .expect("rolled over to a file")
        .read_ciphertext()?;
    let windows: HashSet<&[u8]> = plain.windows(16).collect();
    assert!(!raw.windows(16).any(|w| windows.contains(w)));
    Ok(())
}

#[test]
fn spooled_file_keeps_its_position_when_rolled() -> io::Result<()> {
    let mut f = Builder::new().spooled(1 << 20);
    f.write_all(b"0123456789")?;
    f.seek(SeekFrom::Start(4))?;
    f.roll()?;
    assert!(f.is_rolled());
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    assert_eq!(s, "456789");
    Ok(())
}

#[test]
fn builder_refuses_a_bad_block_size() {
    for bs in [0usize, 512, 3000, 2 << 20] {
        let err = Builder::new()
            .block_size(bs)
            .unnamed()
            .expect_err("not a power of two from 1 KiB to 1 MiB");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bs}");
    }
}

#[test]
fn file_key_refuses_a_bad_length_and_hides_its_bytes() -> Result<(), Error> {
    assert!(matches!(
        FileKey::from_slice(&[1; 20]),
        Err(Error::KeySize(20))
    ));
    let key = FileKey::from_slice(&[0xab; 24])?;
    assert_eq!(key.size(), KeySize::Aes192);
    let shown = format!("{key:?}");
    assert!(!shown.contains("171") && !shown.contains("ab,"), "{shown}");
    Ok(())
}

/// A write at an offset whose slot would lie past what a file offset can
/// address fails in the call with `FileTooLarge` and leaves the disk as it
/// was (the slot offset used to wrap onto block 0); so does a `set_len` to
/// an impossible size, which used to succeed and fail only at the next flush.
#[test]
fn writes_and_set_len_past_the_largest_file_size_fail_and_change_nothing() -> io::Result<()> {
    let max = seccs_tempfile::format::MAX_FILE_SIZE;
    let slot = (4096 + seccs_tempfile::format::BLOCK_OVERHEAD) as u128;
    let wraps = (1u128 << 64).div_ceil(slot) * 4096;
    let wraps = u64::try_from(wraps).map_err(io::Error::other)?;
    let mut f = NamedEphemeralFile::new()?;
    f.write_all(&[7; 4096])?;
    f.flush()?;
    let before = std::fs::read(f.path())?;
    for at in [wraps, max, u64::MAX - 10] {
        f.seek(SeekFrom::Start(at))?;
        let err = f
            .write_all(&[0x55; 4096])
            .expect_err("past the largest size");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{at}");
    }
    for size in [u64::MAX, max + 1] {
        let err = f
            .as_file_mut()
            .set_len(size)
            .expect_err("past the largest size");
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "{size}");
    }
    assert_eq!(f.as_file().len(), 4096);
    f.flush()?;
    assert_eq!(std::fs::read(f.path())?, before);
    f.seek(SeekFrom::Start(0))?;
    let mut back = Vec::new();
    f.read_to_end(&mut back)?;
    assert_eq!(back, vec![7; 4096]);
    Ok(())
}

/// A file with a hole too large for a persisted footer cannot be persisted,
/// and says so, instead of allocating a version for every block of the hole.
#[test]
fn persisting_a_file_with_too_many_slots_fails_cleanly() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut f = Builder::new().block_size(1024).tempfile_in(dir.path())?;
    f.write_all(b"head")?;
    let far = (seccs_tempfile::format::MAX_PERSISTED_SLOTS + 5) * 1024;
    f.seek(SeekFrom::Start(far))?;
    f.write_all(b"tail")?;
    let err = f
        .persist(dir.path().join("kept"))
        .expect_err("too many slots for a footer");
    assert_eq!(err.error.kind(), io::ErrorKind::FileTooLarge);
    assert!(!dir.path().join("kept").exists());
    let mut f = err.file;
    f.seek(SeekFrom::Start(far))?;
    let mut back = Vec::new();
    f.read_to_end(&mut back)?;
    assert_eq!(back, b"tail");
    Ok(())
}

/// As with the `tempfile` crate, the file and a failed persist's error can
/// cross threads and be shared (`anyhow`, `Box<dyn Error + Send + Sync>`).
#[test]
fn the_file_and_its_errors_are_send_and_sync() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<seccs_tempfile::EphemeralFile>();
    send_sync::<seccs_tempfile::NamedEphemeralFile>();
    send_sync::<seccs_tempfile::PersistError>();
    fn into_boxed(e: seccs_tempfile::PersistError) -> Box<dyn std::error::Error + Send + Sync> {
        Box::new(e)
    }
    let _ = into_boxed;
}

/// A named file serves where `tempfile`'s does: as a path (`AsRef<Path>`)
/// and as the descriptor of its ciphertext (`AsFd`, `AsRawFd`).
#[test]
fn a_named_file_is_a_path_and_a_descriptor_as_tempfiles_is() -> io::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::MetadataExt;

    fn len_at(path: impl AsRef<std::path::Path>) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    let dir = tempfile::tempdir()?;
    let mut f = NamedEphemeralFile::new_in(dir.path())?;
    f.write_all(&known_plaintext(10_000))?;
    f.flush()?;
    let on_disk = len_at(&f)?;
    assert!(on_disk > 10_000, "ciphertext and tags: {on_disk}");
    assert_eq!(f.as_raw_fd(), f.as_fd().as_raw_fd());
    let by_fd = std::fs::metadata(format!("/proc/self/fd/{}", f.as_raw_fd()))?;
    assert_eq!(by_fd.ino(), std::fs::metadata(f.path())?.ino());
    Ok(())
}

#[test]
fn persist_noclobber_refuses_an_existing_file_and_gives_the_file_back() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let taken = dir.path().join("taken");
    std::fs::write(&taken, b"someone else's")?;
    let mut f = NamedEphemeralFile::new_in(dir.path())?;
    f.write_all(b"mine")?;
    let err = f.persist_noclobber(&taken).expect_err("the target exists");
    assert_eq!(err.error.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&taken)?, b"someone else's");
    // Back, still temporary and whole (the footer came off again), by
    // `From` as `tempfile` gives its file back.
    let mut f = NamedEphemeralFile::from(err);
    let temp = f.path().to_owned();
    f.write_all(b", still")?;
    let free = dir.path().join("free");
    let key = f.persist_noclobber(&free)?;
    assert!(!temp.exists());
    let mut s = String::new();
    EphemeralFile::open_persisted(&free, &key)?.read_to_string(&mut s)?;
    assert_eq!(s, "mine, still");
    Ok(())
}

#[test]
fn keep_leaves_the_encrypted_file_in_place_to_reopen_with_its_key() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut f = NamedEphemeralFile::new_in(dir.path())?;
    let secret = known_plaintext(10_000);
    f.write_all(&secret)?;
    let before = f.path().to_owned();
    let (path, key) = f.keep()?;
    assert_eq!(path, before);
    // Not removed on drop, and still ciphertext on disk.
    let raw = std::fs::read(&path)?;
    assert!(!raw.windows(32).any(|w| w == &secret[4_000..4_032]));
    let mut back = Vec::new();
    EphemeralFile::open_persisted(&path, &key)?.read_to_end(&mut back)?;
    assert_eq!(back, secret);
    Ok(())
}
