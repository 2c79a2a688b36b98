//! Fuzzes the segmented stream parser of `seccs-core`: header parsing must
//! never panic and must round-trip, and decrypting arbitrary bytes as a
//! stream must fail cleanly (no panic, no plaintext without a valid tag).
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_core::stream::{Header, open_bytes};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = Header::parse(data) {
        assert_eq!(header.to_bytes(), &data[..len]);
        assert_eq!(header.encoded_len(), len);
    }
    let key = SecretKey::from_bytes([7; 32]);
    // Forging a valid segment without the key is infeasible, so any
    // success would be a bug in the parser.
    assert!(open_bytes(&key, b"fuzz", data).is_err());
});
