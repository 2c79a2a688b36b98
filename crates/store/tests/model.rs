//! Model-based property test: random sequences of put / get / delete over
//! contents built from a small pool of pieces (so contents share, repeat and
//! overlap chunks), checked against a plain map after every step. When every
//! content is deleted, the backend holds zero entries.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;
use seccs_store::backend::{Backend, EmbeddedBackend, MemoryBackend};
use seccs_store::{ContentRef, Params, Store, WrapperKind};

#[derive(Debug, Clone)]
enum Step {
    Put(Vec<usize>),
    Get(usize),
    Delete(usize),
}

fn pool() -> Vec<Vec<u8>> {
    let mut pool: Vec<Vec<u8>> = [0usize, 1, 200, 257, 1000, 3000, 9000]
        .iter()
        .enumerate()
        .map(|(i, &len)| common::random_bytes(len, 77 + i as u64))
        .collect();
    // A run of zeros: no content-defined boundary, cut at the longest leaf.
    pool.push(vec![0; 5000]);
    pool
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => prop::collection::vec(0usize..8, 0..12).prop_map(Step::Put),
        2 => any::<usize>().prop_map(Step::Get),
        3 => any::<usize>().prop_map(Step::Delete),
    ];
    prop::collection::vec(step, 1..40)
}

fn run(backend: Arc<dyn Backend>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let params = Params::new(128, WrapperKind::AesSiv).expect("valid");
    let store = Store::new_unchecked(backend, params, &common::key(3));
    let pieces = pool();
    // Model: every put not yet deleted, as (reference, content).
    let mut live: Vec<(ContentRef, Vec<u8>)> = Vec::new();
    for step in steps {
        match step {
            Step::Put(idx) => {
                let content: Vec<u8> = idx.iter().flat_map(|&i| pieces[i].clone()).collect();
                let outcome = store.put_and_check_if_new(&content).expect("put");
                let was_live = live.iter().any(|(r, _)| *r == outcome.content_ref);
                prop_assert_eq!(outcome.is_new, !was_live);
                live.push((outcome.content_ref, content));
            }
            Step::Get(i) if !live.is_empty() => {
                let (r, c) = &live[i % live.len()];
                prop_assert_eq!(&store.get(r).expect("get"), c);
            }
            Step::Delete(i) if !live.is_empty() => {
                let (r, _) = live.remove(i % live.len());
                store.delete(&r).expect("delete");
                if !live.iter().any(|(l, _)| *l == r) {
                    prop_assert!(store.get(&r).is_err(), "deleted content still readable");
                }
            }
            _ => {}
        }
        let distinct: HashMap<&ContentRef, &Vec<u8>> = live.iter().map(|(r, c)| (r, c)).collect();
        for (r, c) in distinct {
            prop_assert_eq!(&store.get(r).expect("get live"), c);
        }
    }
    for (r, _) in live.drain(..) {
        store.delete(&r).expect("delete");
    }
    prop_assert_eq!(store.usage().expect("usage").entries, 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn memory_backend_matches_the_model_and_ends_empty(steps in steps()) {
        run(Arc::new(MemoryBackend::new()), steps)?;
    }

    #[test]
    fn embedded_backend_matches_the_model_and_ends_empty(steps in steps()) {
        let dir = tempfile::tempdir().expect("tempdir");
        run(Arc::new(EmbeddedBackend::open(dir.path()).expect("open")), steps)?;
    }
}
