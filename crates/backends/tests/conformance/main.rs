//! One conformance suite, run unchanged on every backend: memory, embedded,
//! Redis, PostgreSQL and S3 (the last three on real servers started by the
//! tests on loopback ports; see `support`).
//!
//! Each backend gets a module of tests with the same names, so a failure
//! reads as `redis::transactional_batch_is_never_seen_half_applied`.

#[path = "../support/mod.rs"]
mod support;

mod cases;
mod faults;
mod harness;
mod hostile;
mod mirror;
mod writer_lock;

macro_rules! conformance {
    ($($module:ident => $harness:ty),* $(,)?) => {$(
        mod $module {
            use crate::cases;
            use crate::support::TestResult;
            type H = $harness;

            #[test]
            fn batch_round_trips() -> TestResult {
                cases::batch_round_trips::<H>()
            }
            #[test]
            fn many_key_reads_take_one_round_trip() -> TestResult {
                cases::many_key_reads_take_one_round_trip::<H>()
            }
            #[test]
            fn set_count_and_delete_follow_batch_order() -> TestResult {
                cases::set_count_and_delete_follow_batch_order::<H>()
            }
            #[test]
            fn stages_apply_in_order() -> TestResult {
                cases::stages_apply_in_order::<H>()
            }
            #[test]
            fn for_each_and_usage_see_every_entry() -> TestResult {
                cases::for_each_and_usage_see_every_entry::<H>()
            }
            #[test]
            fn transactional_batch_is_never_seen_half_applied() -> TestResult {
                cases::transactional_batch_is_never_seen_half_applied::<H>()
            }
            #[test]
            fn batch_round_trips_do_not_grow_with_nodes() -> TestResult {
                cases::batch_round_trips_do_not_grow_with_nodes::<H>()
            }
            #[test]
            fn server_down_is_unavailable_then_recovers() -> TestResult {
                cases::server_down_is_unavailable_then_recovers::<H>()
            }
            #[test]
            fn wrong_credentials_are_refused_clearly() -> TestResult {
                cases::wrong_credentials_are_refused_clearly::<H>()
            }
            #[test]
            fn store_round_trips() -> TestResult {
                cases::store_round_trips::<H>()
            }
            #[test]
            fn store_detects_tampering() -> TestResult {
                cases::store_detects_tampering::<H>()
            }
            #[test]
            fn store_model() -> TestResult {
                cases::store_model::<H>()
            }
        }
    )*};
}

conformance! {
    memory => crate::harness::Memory,
    embedded => crate::harness::Embedded,
    redis => crate::harness::Redis,
    postgres => crate::harness::Postgres,
    s3 => crate::harness::S3,
}
