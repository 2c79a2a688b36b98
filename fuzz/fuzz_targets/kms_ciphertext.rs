//! Fuzzes the message ciphertext parser of `seccs-kms`: parsing must never
//! panic and must round-trip its header; opening arbitrary bytes must fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_kms::ciphertext::{CiphertextHeader, HEADER_LEN, MessageCipher};

fuzz_target!(|data: &[u8]| {
    if let Ok((header, body)) = CiphertextHeader::parse(data) {
        assert_eq!(&header.to_bytes()[..], &data[..HEADER_LEN]);
        assert_eq!(body.len(), data.len() - HEADER_LEN);
    }
    let cipher = MessageCipher::new(&SecretKey::from_bytes([9; 32]), 0);
    assert!(cipher.open(data, b"ctx").is_err());
});
