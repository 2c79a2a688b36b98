//! Entry points for the fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (and for their own tests) and not part of the API.
//!
//! Catalog records and node bodies are decoded only after AES-SIV has
//! authenticated them, so a fuzzer that goes through [`Store`](crate::Store)
//! never reaches their decoders with bytes of its choosing. These functions
//! hand it the decoders directly: a decoder that panics or misreads its own
//! encoding is a bug even behind authentication, because a key holder (or a
//! future format) can write those bytes.

use crate::catalog::Entry;
use crate::catalog::FORMAT;
use crate::node;

/// Decodes `bytes` as a catalog entry (a name's record or a page of
/// one); whatever decodes must survive an encode and decode unchanged, and
/// an entry in the current format must encode back to exactly `bytes` (one
/// encoding per entry).
pub fn catalog_record(bytes: &[u8]) {
    let Some(record) = Entry::decode(bytes) else {
        return;
    };
    let encoded = record.encode();
    assert_eq!(
        Entry::decode(&encoded).as_ref(),
        Some(&record),
        "a decoded record does not survive its own encoding"
    );
    if bytes.first() == Some(&FORMAT) {
        assert_eq!(encoded, bytes, "two encodings of one record");
    }
}

/// Decodes `body` as a node of `kind`: as a leaf promised to hold
/// `expected_len` bytes, and as a superchunk with 16- and 32-byte digests.
/// A leaf that decodes holds exactly the promised length; a superchunk that
/// decodes has children of non-zero length summing to the promise, and
/// encodes back to `body`.
pub fn node(kind: u8, body: &[u8], expected_len: u64) {
    if let Ok(leaf) = node::decode_leaf((kind, body.to_vec()), expected_len) {
        assert_eq!(leaf.len() as u64, expected_len);
    }
    for digest_len in [16, 32] {
        let Ok(children) = node::decode_superchunk((kind, body.to_vec()), digest_len, expected_len)
        else {
            continue;
        };
        assert!(children.iter().all(|c| c.len > 0));
        assert_eq!(
            children.iter().map(|c| u128::from(c.len)).sum::<u128>(),
            u128::from(expected_len)
        );
        let encoded =
            node::encode_superchunk(children.iter().map(|c| (c.digest.as_slice(), c.len)));
        assert_eq!(encoded, body);
    }
}

#[cfg(test)]
mod tests {
    //! The fuzz targets' own assertions hold on real encodings: a fuzzer
    //! that reports a failure has found a bug, not a wrong property.

    use std::sync::Arc;

    use seccs_core::SecretKey;

    use super::*;
    use crate::backend::MemoryBackend;
    use crate::catalog::EntryKind;
    use crate::{Params, Store, WrapperKind};

    #[test]
    fn a_stored_record_passes_the_catalog_record_target() -> crate::Result<()> {
        let params = Params::new(128, WrapperKind::AesSiv)?;
        let store = Store::new_unchecked(
            Arc::new(MemoryBackend::new()),
            params,
            &SecretKey::from_bytes([1; 32]),
        );
        store.put_named(&mut &b"first"[..], "docs/a.txt", EntryKind::File)?;
        store.put_named(&mut &b"second"[..], "docs/a.txt", EntryKind::File)?;
        let record = store.lookup("docs/a.txt")?.expect("just put");
        let bytes = record.encode();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(crate::catalog::Record::decode(&bytes), Some(record));
        catalog_record(&bytes);
        // A head with pages, and a page, pass it too.
        for n in 0..=3 * crate::catalog::PAGE_VERSIONS {
            store.put_named(&mut n.to_string().as_bytes(), "many", EntryKind::File)?;
        }
        let record = store.lookup("many")?.expect("just put");
        let key = store.catalog().key_of("many");
        let entries = store.catalog().entries(&key, &Default::default(), &record);
        assert_eq!(entries.len(), 3, "two pages and the head");
        for (key, sealed) in entries {
            let sealed = sealed.expect("written");
            let opened = store.catalog().open_entry(&key, &sealed)?;
            catalog_record(&opened.encode());
        }
        Ok(())
    }

    #[test]
    fn real_nodes_pass_the_node_body_target() {
        let digests = [[7u8; 16], [9u8; 16]];
        let body = node::encode_superchunk(digests.iter().map(|d| (&d[..], 3000)));
        assert!(node::decode_superchunk((node::SUPERCHUNK, body.clone()), 16, 6000).is_ok());
        node(node::SUPERCHUNK, &body, 6000);
        node(node::LEAF_RAW, b"leaf bytes", 10);
        let compressed = zstd::bulk::compress(&[b'a'; 4096], 3).expect("compress");
        assert!(node::decode_leaf((node::LEAF_ZSTD, compressed.clone()), 4096).is_ok());
        node(node::LEAF_ZSTD, &compressed, 4096);
    }
}
