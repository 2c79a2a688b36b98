//! Measurement helpers for `seccs bench`: the floors the store is compared
//! against, measured in the same process on the same data.

use std::time::Instant;

use aes_siv::siv::Aes256Siv;
use seccs_core::SecretKey;

use crate::chunker::Chunker;
use crate::params::Params;

/// MiB/s of `bytes` processed in `secs`.
pub fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs.max(1e-9)
}

/// Raw AES-256-SIV sealing of `chunk_size`-byte chunks of `data` on one
/// thread: the floor of a put.
pub fn aes_siv_floor_mib_s(data: &[u8], chunk_size: usize) -> f64 {
    use aes_siv::aead::KeyInit;
    let key = [7u8; 64];
    let mut cipher = Aes256Siv::new((&key).into());
    let mut out = vec![0u8; chunk_size];
    let start = Instant::now();
    let mut sink = 0u8;
    for chunk in data.chunks(chunk_size) {
        let out = &mut out[..chunk.len()];
        let buf =
            aes_siv::aead::inout::InOutBuf::new(chunk, out).expect("buffers have equal length");
        let tag = cipher
            .encrypt_inout_detached([b"ad"], buf)
            .expect("one header is within the SIV header limit");
        sink ^= tag[0];
    }
    std::hint::black_box(sink);
    mib_s(data.len() as u64, start.elapsed().as_secs_f64())
}

/// The chunker alone over `data`.
pub fn chunker_mib_s(data: &[u8], params: &Params, key: &SecretKey) -> f64 {
    let chunker = Chunker::new(key, params.chunk_size(), params.reference_len());
    let start = Instant::now();
    let cuts = chunker.cut_all(data);
    std::hint::black_box(cuts.len());
    mib_s(data.len() as u64, start.elapsed().as_secs_f64())
}
