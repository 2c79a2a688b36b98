//! Random sequences of write, seek, read, set_len and flush against an
//! in-memory model, for every block size from 1 KiB to 64 KiB and every key
//! size.

mod common;

use common::{Op, block_size, key_size, op, run_sync};
use proptest::prelude::*;
use seccs_tempfile::{Builder, EphemeralFile, KeySize, SpooledTempFile};

fn ops() -> impl Strategy<Value = (usize, KeySize, Vec<Op>)> {
    (block_size(), key_size())
        .prop_flat_map(|(bs, ks)| (Just(bs), Just(ks), prop::collection::vec(op(bs), 1..40)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ephemeral_file_matches_model((bs, ks, ops) in ops()) {
        let mut f = Builder::new().key_size(ks).block_size(bs).unnamed()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        run_sync(&mut f, &ops, EphemeralFile::set_len, EphemeralFile::len)?;
    }

    #[test]
    fn named_file_matches_model((bs, ks, ops) in ops()) {
        let mut f = Builder::new().key_size(ks).block_size(bs).tempfile()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        run_sync(
            &mut f,
            &ops,
            |f, n| f.as_file_mut().set_len(n),
            |f| f.as_file().len(),
        )?;
    }

    #[test]
    fn spooled_file_matches_model(
        (bs, ks, ops) in ops(),
        threshold in prop_oneof![Just(0usize), 1usize..(64 << 10), Just(1usize << 30)],
    ) {
        let mut f = Builder::new().key_size(ks).block_size(bs).spooled(threshold);
        run_sync(&mut f, &ops, SpooledTempFile::set_len, SpooledTempFile::len)?;
    }
}
