//! Fuzzes the catalog record decoder (reached in a store only after AES-SIV
//! has authenticated the record): it must never panic, whatever decodes must
//! survive its own encoding, and a current-format record has one encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    seccs_store::fuzzing::catalog_record(data);
});
