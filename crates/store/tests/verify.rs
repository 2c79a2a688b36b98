//! verify finds every kind of damage and names what it breaks; gc repairs
//! what can be repaired and never removes what a name reaches.

mod common;

use common::{memory_store, random_bytes};
use seccs_store::backend::{Backend, Batch};
use seccs_store::catalog::EntryKind;
use seccs_store::{Finding, WrapperKind};

#[test]
fn a_healthy_store_verifies_clean() {
    for wrapper in WrapperKind::ALL {
        let (store, _) = memory_store(256, wrapper);
        store.put(&random_bytes(100_000, 1)).expect("put");
        store
            .put_named(&mut random_bytes(3000, 2).as_slice(), "n", EntryKind::File)
            .expect("put");
        let report = store.verify().expect("verify");
        assert!(report.is_clean(), "{wrapper}: {report:?}");
        assert_eq!(report.names, 1);
    }
}

#[test]
fn tampered_and_missing_nodes_are_reported_with_the_names_they_break() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let a = random_bytes(50_000, 3);
    let b = random_bytes(50_000, 4);
    store
        .put_named(&mut a.as_slice(), "a", EntryKind::File)
        .expect("put a");
    let (rb, _) = store
        .put_named(&mut b.as_slice(), "b", EntryKind::File)
        .expect("put b");
    // Damage one leaf of b only: find a key not reachable from a.
    let keys_a_only = {
        let (s2, b2) = memory_store(256, WrapperKind::AesSiv);
        s2.put(&a).expect("put");
        b2.keys()
    };
    let victim = backend
        .keys()
        .into_iter()
        .find(|k| k.len() == 16 && !keys_a_only.contains(k) && k != rb.content_ref.digest())
        .expect("a node of b");
    let mut value = backend.get_raw(&victim);
    value[1] ^= 1;
    backend.tamper(&victim, value);
    let report = store.verify().expect("verify");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Tampered { .. }))
    );
    assert_eq!(report.broken_names, ["b"]);
    backend.remove_raw(&victim);
    let report = store.verify().expect("verify");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Missing { .. }))
    );
    assert_eq!(report.broken_names, ["b"]);
}

#[test]
fn wrong_counts_and_orphans_are_found_and_gc_repairs_them_without_touching_names() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let a = random_bytes(40_000, 5);
    store
        .put_named(&mut a.as_slice(), "a", EntryKind::File)
        .expect("put");
    let keys = backend.keys();
    let node = keys.iter().find(|k| k.len() == 16).expect("a node").clone();
    // Lower a count behind the store's back.
    let mut batch = Batch::new();
    batch.set_count(node.clone(), 0);
    backend.apply(&batch).expect("apply");
    // And plant an orphan: a valid node nothing refers to.
    let (other, other_backend) = memory_store(256, WrapperKind::AesSiv);
    let orphan_ref = other.put(&random_bytes(30_000, 6)).expect("put");
    let orphan_value = other_backend.get_raw(orphan_ref.digest());
    let mut batch = Batch::new();
    batch.put(orphan_ref.digest().to_vec(), orphan_value, 0);
    backend.apply(&batch).expect("apply");
    let report = store.verify().expect("verify");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::WrongCount { .. }))
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Orphan { .. }))
    );
    // The node a name still needs is a wrong count, never also an orphan
    // (which gc would be said to remove).
    let lowered = seccs_core::hexenc::encode(&node);
    let about_lowered: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| match f {
            Finding::WrongCount { node, .. } | Finding::Orphan { node } => *node == lowered,
            _ => false,
        })
        .collect();
    assert!(
        matches!(about_lowered[..], [Finding::WrongCount { .. }]),
        "{about_lowered:?}"
    );
    let gc = store.gc().expect("gc");
    assert!(gc.counts_fixed >= 1 && gc.removed >= 1, "{gc:?}");
    // The planted root went, and with it the need for its absent children.
    assert!(gc.is_clean(), "{gc:?}");
    let after = store.verify().expect("verify");
    // The planted root's children are missing in this store; they were
    // never here. Everything else is clean, and the name reads back.
    assert!(
        after
            .findings
            .iter()
            .all(|f| matches!(f, Finding::Missing { .. })),
        "{after:?}"
    );
    assert_eq!(
        store
            .get(&store.resolve("a").expect("a").content_ref)
            .expect("get"),
        a
    );
}

#[test]
fn a_chunk_size_other_than_the_stores_is_a_finding_that_names_what_it_breaks() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let small = random_bytes(100, 5);
    let large = random_bytes(50_000, 6);
    store
        .put_named(&mut small.as_slice(), "small", EntryKind::File)
        .expect("put");
    store
        .put_named(&mut large.as_slice(), "large", EntryKind::File)
        .expect("put");
    // The same backend and key, read with the chunk size of an edited
    // config: the nodes all authenticate, but the large content's root is
    // not at the height a read looks for it.
    let params = seccs_store::Params::new(1024, WrapperKind::AesSiv).expect("params");
    let misread = seccs_store::Store::new_unchecked(
        backend as std::sync::Arc<dyn Backend>,
        params,
        &common::key(1),
    );
    let large_ref = misread.resolve("large").expect("resolve").content_ref;
    assert!(misread.get(&large_ref).is_err(), "the read fails");
    let report = misread.verify().expect("verify");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::WrongHeight { .. })),
        "{report:?}"
    );
    assert_eq!(
        report.broken_names,
        ["large"],
        "a one-chunk content still reads"
    );
    assert!(!report.is_clean());
}

/// Under a wrapper that distinguishes roots, `get` opens a named root as a
/// root: a store whose roots do not authenticate as roots (written by the
/// same key without the distinction, its config then changed) fails every
/// read, and verify says so rather than pass it.
#[test]
fn roots_that_do_not_authenticate_as_roots_are_reported() {
    use std::sync::Arc;
    for (written, read) in [
        (WrapperKind::AesSiv, WrapperKind::AesSivDistinguishedRoot),
        (
            WrapperKind::HmacSha256,
            WrapperKind::HmacSha256DistinguishedRoot,
        ),
    ] {
        let (store, backend) = memory_store(256, written);
        let (outcome, _) = store
            .put_named(
                &mut random_bytes(20_000, 5).as_slice(),
                "n",
                EntryKind::File,
            )
            .expect("put");
        let r = outcome.content_ref;
        let root = seccs_core::hexenc::encode(r.digest());
        assert!(store.verify().expect("verify").is_clean());
        let params = seccs_store::Params::new(256, read).expect("params");
        let misread = seccs_store::Store::new_unchecked(
            backend.clone() as Arc<dyn Backend>,
            params,
            &common::key(1),
        );
        assert!(misread.get(&r).is_err(), "{read}: a read fails");
        let report = misread.verify().expect("verify");
        assert!(
            report
                .findings
                .iter()
                .any(|f| matches!(f, Finding::Tampered { node } if *node == root)),
            "{read}: {report:?}"
        );
        assert_eq!(report.broken_names, ["n"], "{read}");
    }
}

#[test]
fn gc_leaves_what_it_cannot_read_and_says_so_and_the_broken_name_can_then_be_removed() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let a = random_bytes(50_000, 21);
    let b = random_bytes(50_000, 22);
    store
        .put_named(&mut a.as_slice(), "a", EntryKind::File)
        .expect("put a");
    let (rb, _) = store
        .put_named(&mut b.as_slice(), "b", EntryKind::File)
        .expect("put b");
    let keys_b_alone = {
        let (s2, b2) = memory_store(256, WrapperKind::AesSiv);
        s2.put(&b).expect("put");
        b2.keys()
    };
    // b's root: removing b must open it to release its children.
    let victim = rb.content_ref.digest().to_vec();
    let mut value = backend.get_raw(&victim);
    value[1] ^= 1;
    backend.tamper(&victim, value);

    // gc repairs nothing here and removes nothing a name reaches; it says
    // what is left.
    let gc = store.gc().expect("gc");
    assert_eq!(gc.removed, 0, "{gc:?}");
    assert!(!gc.is_clean());
    assert!(
        gc.remaining
            .iter()
            .any(|f| matches!(f, Finding::Tampered { .. })),
        "{gc:?}"
    );
    assert_eq!(gc.broken_names, ["b"]);
    assert_eq!(
        store
            .get(&store.resolve("a").expect("a").content_ref)
            .expect("a reads back"),
        a
    );

    // The broken name can be removed although a node of it does not
    // authenticate.
    store.remove_name("b", None).expect("rm b");
    let gc = store.gc().expect("gc");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(store.verify().expect("verify").is_clean());
    // The children the tampered root listed cannot be told, so they keep
    // their counts: a leak of b's nodes, never a loss of a's.
    store.remove_name("a", None).expect("rm a");
    store.gc().expect("gc");
    let left = backend.keys();
    assert!(!left.contains(&victim));
    assert!(left.iter().all(|k| keys_b_alone.contains(k)), "{left:?}");
}

#[test]
fn gc_removes_an_orphan_that_does_not_authenticate() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let a = random_bytes(20_000, 23);
    store
        .put_named(&mut a.as_slice(), "a", EntryKind::File)
        .expect("put");
    let mut batch = Batch::new();
    batch.put(vec![7; 16], vec![1, 2, 3, 4, 5], 0);
    backend.apply(&batch).expect("apply");
    let report = store.verify().expect("verify");
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Orphan { .. })),
        "{report:?}"
    );
    let gc = store.gc().expect("gc");
    assert_eq!(gc.removed, 1, "{gc:?}");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(store.verify().expect("verify").is_clean());
}

/// One catalog record that fails to authenticate blocks no delete of
/// another content (a delete once listed every name and failed on it), is
/// a finding of its own, and gc removes it in a store whose key was
/// checked at open; what it held keeps its counts, as puts without a name.
/// A store opened without a key check leaves it: under a wrong key every
/// record would look so.
#[test]
fn a_record_that_fails_to_authenticate_blocks_no_delete_and_gc_removes_it() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let a = random_bytes(30_000, 31);
    let b = random_bytes(30_000, 32);
    let (put_a, _) = store
        .put_named(&mut a.as_slice(), "docs/a", EntryKind::File)
        .expect("put a");
    let rb = store.put(&b).expect("put b");
    let record = backend
        .keys()
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .expect("a's record");
    let mut value = backend.get_raw(&record);
    value[20] ^= 1;
    backend.tamper(&record, value);

    let report = store.delete(&rb).expect("b's own put is undone");
    assert_eq!(report.damaged_records, 1, "{report:?}");
    assert!(report.missing.is_empty() && report.unreadable.is_empty());
    assert_eq!(store.get(&put_a.content_ref).expect("a is kept"), a);

    let verify = store.verify().expect("verify");
    let bad: Vec<_> = verify
        .findings
        .iter()
        .filter(|f| matches!(f, Finding::BadRecord { .. }))
        .collect();
    assert_eq!(bad.len(), 1, "{verify:?}");
    assert!(
        bad[0].to_string().contains("`seccs gc` removes it"),
        "{}",
        bad[0]
    );

    // A store opened on the same backend without a key check, here with
    // another key, removes no record (and no node it cannot read).
    let params = *store.params();
    let unchecked = seccs_store::Store::new_unchecked(
        backend.clone() as std::sync::Arc<dyn Backend>,
        params,
        &common::key(9),
    );
    let gc = unchecked.gc().expect("gc under another key");
    assert!(gc.records_removed.is_empty(), "{gc:?}");
    assert_eq!(gc.removed, 0, "{gc:?}");
    assert!(backend.keys().contains(&record));

    let gc = store.gc().expect("gc");
    assert_eq!(
        gc.records_removed,
        [seccs_core::hexenc::encode(&record)],
        "{gc:?}"
    );
    assert!(gc.is_clean(), "{gc:?}");
    assert!(!backend.keys().contains(&record));
    assert!(store.verify().expect("verify").is_clean());
    // a's content is a put without a name now, which a delete undoes.
    store.delete(&put_a.content_ref).expect("a's put");
    assert_eq!(backend.keys().len(), 0);
}

/// A key that opens some of a store's records but not a damaged one is
/// taken by `Store::open` (one damaged record locks nobody out), but not
/// proven to be the store's: the record it does not open may be another
/// key's, so gc leaves it and lists it as left. The store that proved its
/// key (here by opening the backend while it held no record) removes it.
#[test]
fn gc_under_a_key_that_opens_only_some_records_leaves_the_others_and_says_so() {
    let (proven, backend) = memory_store(256, WrapperKind::AesSiv);
    assert!(proven.key_checked());
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        proven
            .put_named(
                &mut random_bytes(3000, 50 + i as u64).as_slice(),
                name,
                EntryKind::File,
            )
            .expect("put");
    }
    let record = backend
        .keys()
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .expect("a record");
    let mut value = backend.get_raw(&record);
    value[20] ^= 1;
    backend.tamper(&record, value);
    let hex = seccs_core::hexenc::encode(&record);

    let reopened = seccs_store::Store::open(
        backend.clone() as std::sync::Arc<dyn Backend>,
        *proven.params(),
        &common::key(1),
    )
    .expect("the store's key opens the other records");
    assert!(!reopened.key_checked());
    let gc = reopened.gc().expect("gc");
    assert!(gc.records_removed.is_empty(), "{gc:?}");
    assert_eq!(gc.records_left, std::slice::from_ref(&hex), "{gc:?}");
    assert!(
        gc.remaining
            .iter()
            .any(|f| matches!(f, Finding::BadRecord { key, .. } if *key == hex)),
        "{gc:?}"
    );
    assert!(backend.keys().contains(&record));
    drop(reopened);

    let gc = proven.gc().expect("gc");
    assert_eq!(gc.records_removed, [hex], "{gc:?}");
    assert!(gc.records_left.is_empty(), "{gc:?}");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(!backend.keys().contains(&record));
}

/// A memory backend that holds one entry it cannot decode, as a Redis
/// value too short for its count: a walk reports it as damaged, a lookup
/// fails, and a delete removes it.
#[derive(Default)]
struct OneUndecodable {
    inner: seccs_store::backend::MemoryBackend,
    /// The entry's key; none (empty) until it is damaged.
    key: std::sync::Mutex<Vec<u8>>,
    /// A walk reports the damage by a prefix of the key, as the embedded
    /// backend reports a range of entries in a block it cannot read.
    as_range: std::sync::atomic::AtomicBool,
}

impl OneUndecodable {
    fn key(&self) -> Vec<u8> {
        self.key.lock().expect("not poisoned").clone()
    }

    fn damaged(&self) -> seccs_store::backend::BackendError {
        seccs_store::backend::BackendError::Corrupt {
            backend: "undecodable".into(),
            detail: format!(
                "entry {} is too short for its count",
                seccs_core::hexenc::encode(&self.key())
            ),
        }
    }

    fn holds_it(&self) -> bool {
        self.inner.keys().contains(&self.key())
    }
}

impl Backend for OneUndecodable {
    fn name(&self) -> &str {
        "undecodable"
    }
    fn get_many(
        &self,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<seccs_store::backend::Entry>>, seccs_store::backend::BackendError> {
        if self.holds_it() && keys.contains(&self.key().as_slice()) {
            return Err(self.damaged());
        }
        self.inner.get_many(keys)
    }
    fn apply(&self, batch: &Batch) -> Result<(), seccs_store::backend::BackendError> {
        self.inner.apply(batch)
    }
    fn is_transactional(&self) -> bool {
        true
    }
    fn walk(
        &self,
        prefix: &[u8],
        visit: &mut seccs_store::backend::Visitor<'_>,
        mut damaged: Option<&mut seccs_store::backend::Damaged<'_>>,
    ) -> Result<(), seccs_store::backend::BackendError> {
        let broken = self.key();
        self.inner.walk(
            prefix,
            &mut |key, entry| {
                if key != broken.as_slice() {
                    return visit(key, entry);
                }
                match damaged.as_mut() {
                    Some(damaged) => {
                        let reported =
                            match self.as_range.load(std::sync::atomic::Ordering::Relaxed) {
                                true => &key[..4],
                                false => key,
                            };
                        damaged(reported, self.damaged());
                        Ok(())
                    }
                    None => Err(self.damaged()),
                }
            },
            None,
        )
    }
}

/// A node in a range the backend cannot read (a damaged block of the
/// embedded store, reported by its range's prefix) is reported once, as
/// unreadable: it is stored, only not readable, so not also `missing`.
#[test]
fn a_node_in_an_unreadable_range_is_unreadable_not_missing() {
    let backend = std::sync::Arc::new(OneUndecodable::default());
    backend
        .as_range
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let store = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("new");
    let (put, _) = store
        .put_named(
            &mut random_bytes(20_000, 7).as_slice(),
            "a",
            EntryKind::File,
        )
        .expect("put");
    let root = put.content_ref.digest().to_vec();
    *backend.key.lock().expect("not poisoned") = root.clone();
    let report = store.verify().expect("verify");
    let range = seccs_core::hexenc::encode(&root[..4]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { key, .. } if *key == range)),
        "{report:?}"
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Missing { .. })),
        "{report:?}"
    );
}

/// A catalog entry the backend cannot decode at all is removed by gc in a
/// store whose key was checked at open, and reported as removed (it was
/// only `unreadable`, left for a manual delete); what it held keeps its
/// counts, as puts without a name. A store opened without a key check
/// leaves it.
#[test]
fn gc_removes_a_catalog_entry_the_backend_cannot_decode() {
    let backend = std::sync::Arc::new(OneUndecodable::default());
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let writer = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("new");
    let contents: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(20_000, 40 + i)).collect();
    let mut refs = Vec::new();
    for (name, content) in ["a", "b", "c"].into_iter().zip(&contents) {
        let (put, _) = writer
            .put_named(&mut content.as_slice(), name, EntryKind::File)
            .expect("put");
        refs.push(put.content_ref);
    }
    drop(writer);
    let record = backend
        .inner
        .keys()
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .expect("a record");
    *backend.key.lock().expect("not poisoned") = record.clone();
    let hex = seccs_core::hexenc::encode(&record);
    let store = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("open");
    let verify = store.verify().expect("verify");
    assert!(
        verify
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { key, .. } if *key == hex)),
        "{verify:?}"
    );
    assert_eq!(store.list_readable("").expect("list").damaged, 1);

    // Without a key check, gc leaves it and says so.
    let unchecked = seccs_store::Store::new_unchecked(backend.clone(), params, &common::key(1));
    let gc = unchecked.gc().expect("gc");
    assert!(gc.unreadable_records_removed.is_empty(), "{gc:?}");
    assert!(
        gc.remaining
            .iter()
            .any(|f| matches!(f, Finding::Unreadable { key, .. } if *key == hex)),
        "{gc:?}"
    );
    assert!(backend.holds_it());

    let gc = store.gc().expect("gc");
    assert_eq!(gc.unreadable_records_removed, [hex], "{gc:?}");
    assert!(gc.records_removed.is_empty(), "{gc:?}");
    assert!(gc.is_clean(), "{gc:?}");
    assert!(!backend.holds_it());
    assert!(store.verify().expect("verify").is_clean());
    let listing = store.list_readable("").expect("list");
    assert_eq!((listing.records.len(), listing.damaged), (2, 0));
    // Every content reads back: the removed name's as a put without one.
    for (r, content) in refs.iter().zip(&contents) {
        assert_eq!(&store.get(r).expect("get"), content);
    }
}

/// A superchunk the backend cannot decode, met by a delete's walk for
/// the root's parents, may hold the root as another content's part: the
/// delete refuses, naming it, and removes nothing, rather than take that
/// hold for a put (and report "nothing another content needs removed").
#[test]
fn a_superchunk_the_backend_cannot_decode_stops_a_delete_it_may_hold() {
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    let (b, a) = common::content_and_its_first_leaf(&params);
    let backend = std::sync::Arc::new(OneUndecodable::default());
    let store = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("new");
    let rb = store.put(&b).expect("put B");
    let ra = store.put(&a).expect("put A");
    // A value's first byte, its kind, is in the clear: 2 is a superchunk.
    let superchunk = backend
        .inner
        .keys()
        .into_iter()
        .find(|k| backend.inner.get_raw(k).first() == Some(&2))
        .expect("one of B's superchunks");
    *backend.key.lock().expect("not poisoned") = superchunk.clone();
    let entries = backend.inner.keys().len();
    match store.delete(&ra) {
        Err(seccs_store::StoreError::Integrity(said)) => {
            assert!(
                said.contains(&seccs_core::hexenc::encode(&superchunk)),
                "{said}"
            );
        }
        other => panic!("a delete past an undecodable superchunk: {other:?}"),
    }
    assert_eq!(backend.inner.keys().len(), entries, "nothing removed");
    backend.key.lock().expect("not poisoned").clear();
    store
        .delete(&ra)
        .expect("A's own put, once the backend reads it");
    assert_eq!(store.get(&rb).expect("B is whole"), b);
}

/// With a wrapper that does not distinguish roots, a delete reads every
/// superchunk to count the root's parents. One entry the backend cannot
/// decode there, a catalog record elsewhere or a node of the content's own
/// tree, does not stop the delete (it once ended it with the backend's
/// error): it is skipped and reported, a record in `damaged_records`, a
/// node in `damaged`, once.
#[test]
fn an_entry_the_backend_cannot_decode_blocks_no_delete() {
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("valid");
    assert!(!params.wrapper().distinguishes_root());
    let x = random_bytes(30_000, 61);
    let other = random_bytes(30_000, 62);

    // A catalog record of another name.
    let backend = std::sync::Arc::new(OneUndecodable::default());
    let store = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("new");
    let x_ref = store.put(&x).expect("put x");
    let (a, _) = store
        .put_named(&mut other.as_slice(), "a", EntryKind::File)
        .expect("put a");
    let record = backend
        .inner
        .keys()
        .into_iter()
        .find(|k| seccs_store::catalog::is_catalog_key(k))
        .expect("a's record");
    *backend.key.lock().expect("not poisoned") = record;
    let report = store.delete(&x_ref).expect("x's put is undone");
    assert_eq!(report.damaged_records, 1, "{report:?}");
    assert!(report.damaged.is_empty(), "{report:?}");
    assert!(store.get(&x_ref).is_err(), "x is gone");
    assert_eq!(store.get(&a.content_ref).expect("a's content stays"), other);

    // A node of the content's own tree, below its root: left as it is,
    // with what it lists, and reported once.
    let backend = std::sync::Arc::new(OneUndecodable::default());
    let store = seccs_store::Store::open(backend.clone(), params, &common::key(1)).expect("new");
    store
        .put_named(&mut other.as_slice(), "a", EntryKind::File)
        .expect("put a");
    let before = backend.inner.keys();
    let x_ref = store.put(&x).expect("put x");
    let victim = backend
        .inner
        .keys()
        .into_iter()
        .find(|k| !before.contains(k) && k.as_slice() != x_ref.digest())
        .expect("a node of x below its root");
    *backend.key.lock().expect("not poisoned") = victim.clone();
    let report = store.delete(&x_ref).expect("x's put is undone");
    assert_eq!(
        report.damaged,
        [seccs_core::hexenc::encode(&victim)],
        "{report:?}"
    );
    assert_eq!(report.damaged_records, 0, "{report:?}");
    assert!(backend.holds_it(), "the damaged node is left");
    assert!(store.get(&x_ref).is_err(), "x is gone");
}
