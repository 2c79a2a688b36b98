//! Fuzzes the put and get paths with contents of the fuzzer's choosing, on
//! every crypto wrapper, with and without compression, at small chunk sizes
//! so that deep trees come cheap: what is put reads back exactly, any range
//! reads back as the same slice, a second put of the same content stores
//! nothing new, and deleting both leaves the backend empty.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_store::backend::MemoryBackend;
use seccs_store::{Compression, Params, Store, WrapperKind, ZstdLevel};

fuzz_target!(|data: &[u8]| {
    let Some((&[selector, a, b], content)) = data.split_first_chunk::<3>() else {
        return;
    };
    let wrapper = WrapperKind::ALL[usize::from(selector) % WrapperKind::ALL.len()];
    let compression = if selector & 0x80 == 0 {
        Compression::None
    } else {
        Compression::Zstd(ZstdLevel::MIN)
    };
    let min = 2 * (wrapper.digest_len() + 8);
    let chunk_size = min + usize::from(selector >> 3 & 0x0f) * 8;
    let params = Params::new(chunk_size, wrapper)
        .expect("at least 2R")
        .with_compression(compression);
    let backend = Arc::new(MemoryBackend::new());
    let store = Store::new_unchecked(backend.clone(), params, &SecretKey::from_bytes([5; 32]));

    let r = store.put(content).expect("put to memory");
    assert_eq!(r.len(), content.len() as u64);
    assert_eq!(store.get(&r).expect("get what was put"), content);
    let again = store.put_and_check_if_new(content).expect("second put");
    assert_eq!(again.content_ref, r);
    assert!(!again.is_new);

    let n = content.len();
    let offset = if n == 0 { 0 } else { usize::from(a) * n / 256 };
    let len = (n - offset) * usize::from(b) / 255;
    let mut out = Vec::new();
    store
        .get_range(&r, offset as u64, len as u64, &mut out)
        .expect("a range inside the content");
    assert_eq!(out, &content[offset..offset + len]);
    assert!(store.get_range(&r, n as u64, 1, &mut Vec::new()).is_err());

    store.delete(&r).expect("first delete");
    assert_eq!(store.get(&r).expect("one put still holds it"), content);
    store.delete(&r).expect("second delete");
    assert!(backend.keys().is_empty(), "a delete left residue");
});
