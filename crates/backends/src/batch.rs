//! What the backends share: the round-trip counter and batch coalescing.

// Builds with only some backends use only some of this.
#![cfg_attr(
    not(all(feature = "redis", feature = "postgres", feature = "s3")),
    allow(dead_code)
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use seccs_store::backend::Op;

/// A counter of round trips (requests awaited from the server) of one
/// backend, readable while the backend is in use.
#[derive(Debug, Default)]
pub struct RoundTrips(AtomicU64);

impl RoundTrips {
    /// Counts `n` more round trips.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Round trips so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The net effect of a run of operations on one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect<'a> {
    /// The key ends up holding this value and count.
    Put { value: &'a [u8], count: u64 },
    /// The key's count is set if the key exists (nothing happens otherwise).
    SetCount { count: u64 },
    /// The key ends up absent.
    Delete,
}

/// Folds `ops` (barriers ignored) into one effect per key, in the order keys
/// first appear. Backends that send set-based statements (PostgreSQL's
/// `unnest` inserts) or run a stage's requests concurrently (S3) must not see
/// one key twice.
pub(crate) fn coalesce(ops: &[Op]) -> Vec<(&[u8], Effect<'_>)> {
    let mut order: Vec<(&[u8], Effect<'_>)> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    for op in ops {
        let (key, effect) = match op {
            Op::Put { key, value, count } => (
                key.as_slice(),
                Effect::Put {
                    value,
                    count: *count,
                },
            ),
            Op::SetCount { key, count } => (key.as_slice(), Effect::SetCount { count: *count }),
            Op::Delete { key } => (key.as_slice(), Effect::Delete),
            Op::Barrier => continue,
        };
        match index.get(key) {
            None => {
                index.insert(key, order.len());
                order.push((key, effect));
            }
            Some(&i) => {
                let merged = match (order[i].1, effect) {
                    (Effect::Put { value, .. }, Effect::SetCount { count }) => {
                        Effect::Put { value, count }
                    }
                    // A count set on a key deleted earlier in the batch finds
                    // no entry: the key stays absent.
                    (Effect::Delete, Effect::SetCount { .. }) => Effect::Delete,
                    (_, later) => later,
                };
                order[i].1 = merged;
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use seccs_store::backend::Batch;

    #[test]
    fn coalesce_keeps_the_last_effect_per_key() {
        let mut batch = Batch::new();
        batch.put(b"a".to_vec(), b"1".to_vec(), 1);
        batch.set_count(b"a".to_vec(), 5);
        batch.delete(b"b".to_vec());
        batch.set_count(b"b".to_vec(), 2);
        batch.barrier();
        batch.set_count(b"c".to_vec(), 3);
        batch.delete(b"d".to_vec());
        batch.put(b"d".to_vec(), b"4".to_vec(), 4);
        let got = coalesce(batch.ops());
        assert_eq!(
            got,
            vec![
                (
                    &b"a"[..],
                    Effect::Put {
                        value: b"1",
                        count: 5
                    }
                ),
                (&b"b"[..], Effect::Delete),
                (&b"c"[..], Effect::SetCount { count: 3 }),
                (
                    &b"d"[..],
                    Effect::Put {
                        value: b"4",
                        count: 4
                    }
                ),
            ]
        );
    }
}
