//! The async variant passes the same model test as the synchronous one.

mod common;

use std::io::SeekFrom;

use common::{Model, Op, block_size, key_size, op};
use proptest::prelude::*;
use seccs_tempfile::{AsyncEphemeralFile, Builder, KeySize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn ops() -> impl Strategy<Value = (usize, KeySize, Vec<Op>)> {
    (block_size(), key_size())
        .prop_flat_map(|(bs, ks)| (Just(bs), Just(ks), prop::collection::vec(op(bs), 1..40)))
}

fn fail(what: &str, e: std::io::Error) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e}"))
}

async fn run(f: &mut AsyncEphemeralFile, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Write(buf) => {
                f.write_all(buf).await.map_err(|e| fail("write", e))?;
                model.write(buf);
            }
            Op::Read(n) => {
                let mut got = Vec::new();
                (&mut *f)
                    .take(*n as u64)
                    .read_to_end(&mut got)
                    .await
                    .map_err(|e| fail("read", e))?;
                prop_assert_eq!(got, model.read(*n), "step {}: read {}", step, n);
            }
            Op::Seek(to) => {
                let got = f.seek(*to).await.ok();
                prop_assert_eq!(got, model.seek(*to), "step {}: seek {:?}", step, to);
            }
            Op::SetLen(n) => {
                f.set_len(*n).await.map_err(|e| fail("set_len", e))?;
                model.set_len(*n);
            }
            Op::Flush => f.flush().await.map_err(|e| fail("flush", e))?,
        }
        let len = f.len().await.map_err(|e| fail("len", e))?;
        prop_assert_eq!(len, model.data.len() as u64, "step {}: len", step);
    }
    f.seek(SeekFrom::Start(0))
        .await
        .map_err(|e| fail("seek", e))?;
    let mut all = Vec::new();
    f.read_to_end(&mut all)
        .await
        .map_err(|e| fail("read all", e))?;
    prop_assert!(all == model.data, "final contents differ");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn async_file_matches_model((bs, ks, ops) in ops()) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| fail("runtime", e))?;
        rt.block_on(async {
            let file = Builder::new().key_size(ks).block_size(bs).unnamed()
                .map_err(|e| fail("create", e))?;
            let mut f = AsyncEphemeralFile::from_std(file);
            run(&mut f, &ops).await
        })?;
    }
}

#[tokio::test]
async fn async_file_reports_tampering_as_invalid_data() -> std::io::Result<()> {
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::FileExt;

    let mut sync = Builder::new().unnamed()?;
    let fd = sync.as_fd().as_raw_fd();
    std::io::Write::write_all(&mut sync, &[5u8; 3 * 4096])?;
    let mut f = AsyncEphemeralFile::from_std(sync);
    f.flush().await?;
    let disk = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/proc/self/fd/{fd}"))?;
    // Flip the byte's bits: writing a fixed value would leave it as it was
    // once in 256 runs (the ciphertext is under a fresh key each run).
    let mut byte = [0u8; 1];
    disk.read_exact_at(&mut byte, 100)?;
    disk.write_all_at(&[byte[0] ^ 0xff], 100)?;
    f.seek(SeekFrom::Start(0)).await?;
    let mut all = Vec::new();
    let err = f.read_to_end(&mut all).await.expect_err("tampered block");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(all.is_empty());
    Ok(())
}

/// A write behind that fails is said by the next flush even when a seek
/// came between (as `tokio::fs::File` keeps it), once: the file goes on.
#[tokio::test]
async fn a_failed_write_behind_is_said_by_the_next_flush_after_a_seek() -> std::io::Result<()> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let mut f = AsyncEphemeralFile::new().await?;
    f.write_all(b"kept").await?;
    f.seek(std::io::SeekFrom::Start(1 << 62)).await?;
    // Handed over: the failure (past the largest file) comes later.
    assert_eq!(f.write(b"x").await?, 1);
    f.seek(std::io::SeekFrom::Start(0)).await?;
    let err = f.flush().await.expect_err("the failed write is said");
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge, "{err}");
    f.flush().await?;
    assert_eq!(f.len().await?, 4);
    Ok(())
}

#[tokio::test]
async fn async_file_round_trips_through_into_std() -> std::io::Result<()> {
    let mut f = AsyncEphemeralFile::new().await?;
    f.write_all(b"0123456789").await?;
    f.seek(SeekFrom::Start(3)).await?;
    let mut two = [0u8; 2];
    f.read_exact(&mut two).await?;
    assert_eq!(&two, b"34");
    let mut sync = f.into_std().await?;
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut sync, &mut rest)?;
    assert_eq!(rest, "56789");
    Ok(())
}
