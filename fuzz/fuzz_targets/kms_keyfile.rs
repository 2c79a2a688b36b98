//! Fuzzes the key file parsers of `seccs-kms` (DEK files and named key
//! files): parsing must never panic, must round-trip, and opening arbitrary
//! bytes must fail with an error, never yield a key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_kms::keyfile::{NamedKeyFile, SealedDek};

fuzz_target!(|data: &[u8]| {
    let kek = SecretKey::from_bytes([3; 32]);
    if let Ok(dek) = SealedDek::parse(data) {
        assert_eq!(&dek.to_bytes()[..], data);
        assert!(dek.open(&kek).is_err());
    }
    if let Ok(file) = NamedKeyFile::parse(data) {
        assert_eq!(file.to_bytes(), data);
        assert!(file.open(&kek).is_err());
    }
});
