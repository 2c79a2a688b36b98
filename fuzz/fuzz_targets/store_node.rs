//! Untrusted backend values: whatever bytes stand in for a stored node or
//! catalog record, reading either fails cleanly or returns exactly the
//! content that was put. Never a panic, never wrong data.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_store::backend::{Backend, Batch, MemoryBackend};
use seccs_store::catalog::EntryKind;
use seccs_store::{ContentRef, Params, Store, WrapperKind};

const NAME: &str = "docs/a.txt";

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let wrapper = WrapperKind::ALL[usize::from(selector) % WrapperKind::ALL.len()];
    let backend = Arc::new(MemoryBackend::new());
    let params = Params::new(128, wrapper).expect("128 is a valid chunk size");
    let store = Store::new_unchecked(backend.clone(), params, &SecretKey::from_bytes([3; 32]));
    let content: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (put, _) = store
        .put_named(&mut &content[..], NAME, EntryKind::File)
        .expect("put to memory");
    let r = put.content_ref;
    let keys = backend.keys();
    let victim = &keys[usize::from(selector) % keys.len()];
    let mut batch = Batch::new();
    batch.put(victim.clone(), value.to_vec(), 1);
    backend.apply(&batch).expect("apply to memory");
    if let Ok(back) = store.get(&r) {
        assert_eq!(back, content, "a forged node produced wrong data");
    }
    // The victim may be the catalog record: a forged one never resolves to
    // another content.
    if let Ok(version) = store.resolve(NAME) {
        assert_eq!(
            version.content_ref, r,
            "a forged record named another content"
        );
    }
    let _ = store.list("");
    let _ = store.verify();
    // References typed by users are untrusted too.
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(parsed) = text.parse::<ContentRef>()
    {
        assert_eq!(parsed.to_hex().parse::<ContentRef>().ok(), Some(parsed));
    }
});
