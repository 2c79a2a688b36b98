//! Helpers shared by the store's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use seccs_core::SecretKey;
use seccs_store::backend::{Backend, MemoryBackend};
use seccs_store::{Params, Store, WrapperKind};

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A content B of 20,000 bytes whose first leaf (at most one chunk of
/// `params`, under [`key`] 1) is the whole of a shorter content A: with a
/// wrapper that does not distinguish roots, A's root is B's first leaf.
/// Returns (B, A).
pub fn content_and_its_first_leaf(params: &Params) -> (Vec<u8>, Vec<u8>) {
    let chunker =
        seccs_store::chunker::Chunker::new(&key(1), params.chunk_size(), params.reference_len());
    let (b, first) = (0..1000u64)
        .map(|seed| random_bytes(20_000, 500 + seed))
        .find_map(|b| {
            let (len, _) = chunker.next_boundary(&b)?;
            (len <= params.chunk_size()).then_some((b, len))
        })
        .expect("a content whose first leaf is one chunk");
    let a = b[..first].to_vec();
    (b, a)
}

/// A fixed store key, so failures reproduce.
pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes([seed; 32])
}

/// A store over a fresh memory backend (its key checked: the backend is
/// new), and the backend for tampering.
pub fn memory_store(chunk_size: usize, wrapper: WrapperKind) -> (Store, Arc<MemoryBackend>) {
    let backend = Arc::new(MemoryBackend::new());
    let params = Params::new(chunk_size, wrapper).expect("valid chunk size");
    let store =
        Store::open(backend.clone() as Arc<dyn Backend>, params, &key(1)).expect("a new store");
    (store, backend)
}
