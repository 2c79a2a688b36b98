//! Fuzzes the node body decoders (leaves, compressed leaves, superchunks),
//! reached in a store only after AES-SIV has authenticated the node: no
//! panic, no allocation beyond what the parent promises, and a decoded node
//! holds exactly the length its parent promised.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some((len, body)) = rest.split_first_chunk::<4>() else {
        return;
    };
    // A promised length below 1 MiB: enough to test the decompression
    // bound without the fuzzer asking for more memory than a leaf takes.
    let expected_len = u64::from(u32::from_be_bytes(*len) % (1 << 20));
    seccs_store::fuzzing::node(kind % 4, body, expected_len);
});
