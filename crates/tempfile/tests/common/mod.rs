//! The model every file implementation is checked against: a `Vec<u8>` and a
//! cursor, driven by random operations.

#![allow(dead_code)]

use std::io::{self, Read, Seek, SeekFrom, Write};

use proptest::prelude::*;
use seccs_tempfile::KeySize;

/// One operation on a file.
#[derive(Debug, Clone)]
pub enum Op {
    Write(Vec<u8>),
    Read(usize),
    Seek(SeekFrom),
    SetLen(u64),
    Flush,
}

/// Block sizes the tests cover: 1 KiB to 64 KiB.
pub fn block_size() -> impl Strategy<Value = usize> {
    (10u32..=16).prop_map(|log| 1usize << log)
}

/// Every key size.
pub fn key_size() -> impl Strategy<Value = KeySize> {
    prop_oneof![
        Just(KeySize::Aes128),
        Just(KeySize::Aes192),
        Just(KeySize::Aes256)
    ]
}

/// Offsets near the blocks of interest, and far enough to leave the cache
/// window (256 KiB) now and then.
fn offset(bs: usize) -> impl Strategy<Value = u64> {
    let near = 6 * bs as u64;
    prop_oneof![
        4 => 0..near,
        1 => 0..(near + (600 << 10)),
    ]
}

/// Lengths within a block, across a few, and long runs (which skip the
/// cache window and go in parallel parts).
fn length(bs: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0..=bs / 2,
        2 => 0..=3 * bs,
        1 => Just(bs),
        1 => 8 * bs..=20 * bs,
    ]
}

/// A random operation for a file with blocks of `bs` bytes.
pub fn op(bs: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (length(bs), any::<u8>()).prop_map(|(n, seed)| {
            Op::Write((0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1).collect())
        }),
        3 => length(bs).prop_map(Op::Read),
        2 => offset(bs).prop_map(|o| Op::Seek(SeekFrom::Start(o))),
        1 => (-(3 * bs as i64)..(3 * bs as i64)).prop_map(|d| Op::Seek(SeekFrom::Current(d))),
        1 => (-(3 * bs as i64)..(bs as i64)).prop_map(|d| Op::Seek(SeekFrom::End(d))),
        1 => offset(bs).prop_map(Op::SetLen),
        1 => Just(Op::Flush),
    ]
}

/// The in-memory model.
#[derive(Debug, Default)]
pub struct Model {
    pub data: Vec<u8>,
    pub pos: u64,
}

impl Model {
    pub fn write(&mut self, buf: &[u8]) {
        let pos = self.pos as usize;
        if buf.is_empty() {
            return;
        }
        if self.data.len() < pos + buf.len() {
            self.data.resize(pos + buf.len(), 0);
        }
        self.data[pos..pos + buf.len()].copy_from_slice(buf);
        self.pos += buf.len() as u64;
    }

    pub fn read(&mut self, n: usize) -> Vec<u8> {
        let start = (self.pos as usize).min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += (end - start) as u64;
        self.data[start..end].to_vec()
    }

    /// The new position, or `None` where a real file must refuse the seek.
    pub fn seek(&mut self, to: SeekFrom) -> Option<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => (self.data.len() as u64).checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }?;
        self.pos = target;
        Some(target)
    }

    pub fn set_len(&mut self, n: u64) {
        self.data.resize(n as usize, 0);
    }
}

/// Reads until `n` bytes or the end.
pub fn read_up_to<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = r.read(&mut out[got..])?;
        if k == 0 {
            break;
        }
        got += k;
    }
    out.truncate(got);
    Ok(out)
}

/// Runs `ops` on `file` and on the model, checking every result; `set_len`
/// and `len` reach the file's inherent methods.
pub fn run_sync<F: Read + Write + Seek>(
    file: &mut F,
    ops: &[Op],
    set_len: impl Fn(&mut F, u64) -> io::Result<()>,
    len: impl Fn(&F) -> u64,
) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Write(buf) => {
                file.write_all(buf)
                    .map_err(|e| TestCaseError::fail(format!("step {step}: write: {e}")))?;
                model.write(buf);
            }
            Op::Read(n) => {
                let got = read_up_to(file, *n)
                    .map_err(|e| TestCaseError::fail(format!("step {step}: read: {e}")))?;
                prop_assert_eq!(got, model.read(*n), "step {}: read {}", step, n);
            }
            Op::Seek(to) => {
                let got = file.seek(*to).ok();
                let want = model.seek(*to);
                prop_assert_eq!(got, want, "step {}: seek {:?}", step, to);
            }
            Op::SetLen(n) => {
                set_len(file, *n)
                    .map_err(|e| TestCaseError::fail(format!("step {step}: set_len: {e}")))?;
                model.set_len(*n);
            }
            Op::Flush => file
                .flush()
                .map_err(|e| TestCaseError::fail(format!("step {step}: flush: {e}")))?,
        }
        prop_assert_eq!(len(file), model.data.len() as u64, "step {}: len", step);
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| TestCaseError::fail(format!("final seek: {e}")))?;
    let mut all = Vec::new();
    file.read_to_end(&mut all)
        .map_err(|e| TestCaseError::fail(format!("final read: {e}")))?;
    prop_assert!(all == model.data, "final contents differ");
    Ok(())
}
