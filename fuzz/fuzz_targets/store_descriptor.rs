//! Fuzzes the store descriptor, which a backend's owner can write anything
//! into: no bytes may panic its parser, and bytes that do not carry a MAC
//! made under the store key are never accepted. Descriptors made from the
//! input's parameters read back as they were sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seccs_core::SecretKey;
use seccs_store::descriptor::Descriptor;
use seccs_store::{Compression, Params, WrapperKind, ZstdLevel};

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_bytes([7; 32]);
    if let Ok(read) = Descriptor::parse(data) {
        // A MAC under this key is one the fuzzer cannot make, short of
        // being handed one: only bytes this key sealed verify.
        if let Ok(descriptor) = read.verify(&key) {
            assert_eq!(descriptor.seal(&key), data);
        }
    }
    let [size_lo, size_hi, wrapper, level, salted, salt @ ..] = data else {
        return;
    };
    let chunk_size = usize::from(u16::from_le_bytes([*size_lo, *size_hi]));
    let wrapper = WrapperKind::ALL[usize::from(*wrapper) % WrapperKind::ALL.len()];
    let Ok(params) = Params::new(chunk_size, wrapper) else {
        return;
    };
    let compression =
        ZstdLevel::new(i32::from(*level) % 20).map_or(Compression::None, Compression::Zstd);
    let kms_salt = match (salted % 2, salt.get(..16)) {
        (1, Some(salt)) => salt.try_into().ok(),
        _ => None,
    };
    let made = Descriptor {
        params: params.with_compression(compression),
        kms_salt,
    };
    let sealed = made.seal(&key);
    let back = Descriptor::parse(&sealed)
        .expect("a sealed descriptor parses")
        .verify(&key)
        .expect("and verifies under its key");
    assert_eq!(back, made);
    assert!(
        Descriptor::parse(&sealed)
            .expect("parses")
            .verify(&SecretKey::from_bytes([8; 32]))
            .is_err()
    );
});
