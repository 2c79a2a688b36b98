//! Tampering with stored data makes `get` fail with an integrity error, never
//! return wrong data: a flipped byte in any value, two values swapped, a node
//! replaced by one of another height, a truncated value, a deleted entry.

mod common;

use common::{memory_store, random_bytes};
use seccs_store::{ContentRef, StoreError, WrapperKind};

fn assert_integrity_error<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    match r {
        Err(StoreError::Integrity(_)) => {}
        other => panic!("{what}: expected an integrity error, got {other:?}"),
    }
}

#[test]
fn flipping_any_byte_of_any_stored_value_is_detected() {
    for wrapper in WrapperKind::ALL {
        let (store, backend) = memory_store(256, wrapper);
        let content = random_bytes(20_000, 1);
        let r = store.put(&content).expect("put");
        for key in backend.keys() {
            let original = backend.get_raw(&key);
            for i in [0, original.len() / 2, original.len() - 1] {
                let mut bad = original.clone();
                bad[i] ^= 0x01;
                backend.tamper(&key, bad);
                assert_integrity_error(store.get(&r), &format!("{wrapper}: byte {i} flipped"));
            }
            backend.tamper(&key, original);
        }
        assert_eq!(store.get(&r).expect("restored"), content);
    }
}

#[test]
fn swapping_truncating_and_deleting_values_is_detected() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(50_000, 2);
    let r = store.put(&content).expect("put");
    let keys = backend.keys();
    let (a, b) = (&keys[0], &keys[1]);
    let (va, vb) = (backend.get_raw(a), backend.get_raw(b));
    backend.tamper(a, vb.clone());
    backend.tamper(b, va.clone());
    assert_integrity_error(store.get(&r), "swapped");
    backend.tamper(a, va.clone());
    backend.tamper(b, vb);
    backend.tamper(a, va[..va.len() - 1].to_vec());
    assert_integrity_error(store.get(&r), "truncated");
    backend.tamper(a, va);
    assert_eq!(store.get(&r).expect("restored"), content);
    // A node below the root (the backend lists keys in no fixed order; a
    // missing root is a content not found, not a damaged one).
    let inner = keys
        .iter()
        .find(|k| k.as_slice() != r.digest())
        .expect("a tree of more than one node");
    backend.remove_raw(inner);
    assert_integrity_error(store.get(&r), "deleted entry");
}

/// A content put without a name whose tree lost a node below the root
/// can still be deleted (it once failed on the missing node, and nothing
/// could free it): the delete releases what is there, in one batch, and
/// says what was missing. What only the lost node listed cannot be told,
/// so it keeps its count; verify and gc stay clean and exact.
#[test]
fn a_content_that_lost_a_node_can_still_be_deleted_and_says_what_was_missing() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let kept = random_bytes(30_000, 81);
    let (named, _) = store
        .put_named(
            &mut kept.as_slice(),
            "keep",
            seccs_store::catalog::EntryKind::File,
        )
        .expect("put kept");
    let before = backend.keys();
    let content = random_bytes(50_000, 82);
    let r = store.put(&content).expect("put");
    let own: Vec<Vec<u8>> = backend
        .keys()
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    // One node of each kind below the root (a leaf, a superchunk: the kind
    // is a value's first byte).
    let mut kinds = std::collections::HashSet::new();
    let victims: Vec<&Vec<u8>> = own
        .iter()
        .filter(|k| k.as_slice() != r.digest() && kinds.insert(backend.get_raw(k)[0]))
        .collect();
    assert!(victims.len() >= 2, "a leaf and a superchunk");
    for victim in victims {
        let (store, backend) = memory_store(256, WrapperKind::AesSiv);
        store
            .put_named(
                &mut kept.as_slice(),
                "keep",
                seccs_store::catalog::EntryKind::File,
            )
            .expect("put kept");
        assert_eq!(store.put(&content).expect("put"), r);
        backend.remove_raw(victim);
        let report = store.delete(&r).expect("delete past the missing node");
        assert_eq!(
            report.missing,
            [seccs_core::hexenc::encode(victim)],
            "{report:?}"
        );
        assert!(report.removed > 0, "{report:?}");
        let verify = store.verify().expect("verify");
        assert!(verify.is_clean(), "{verify:?}");
        let gc = store.gc().expect("gc");
        assert!(gc.is_clean() && gc.removed == 0, "{gc:?}");
        assert_eq!(store.get(&named.content_ref).expect("kept"), kept);
        // What is left beside the name's tree is the content's only, and
        // only what the lost node listed.
        let left: Vec<Vec<u8>> = backend
            .keys()
            .into_iter()
            .filter(|k| !before.contains(k))
            .collect();
        assert!(
            left.iter().all(|k| own.contains(k) && k != victim),
            "{left:?}"
        );
        assert!(!left.contains(&r.digest().to_vec()));
        // The delete is not repeated: the content's put is undone.
        assert!(matches!(store.delete(&r), Err(StoreError::NotFound(_))));
    }
}

/// A reference's length is its own claim: one whose digest names a
/// stored, authentic node with a length that is not its content's is a
/// wrong reference (`InvalidRef`), not damage to the store (it was an
/// integrity error, like tampering); one whose root is not stored (another
/// store's, or a mistyped digest) is not found; only a root that
/// authenticates as nothing is an integrity error.
#[test]
fn a_wrong_reference_is_told_from_damage() {
    for wrapper in [WrapperKind::AesSiv, WrapperKind::AesSivDistinguishedRoot] {
        let (store, backend) = memory_store(256, wrapper);
        let content = random_bytes(100_000, 83);
        let r = store.put(&content).expect("put");
        let with_len = |len: u64| {
            let mut bytes = r.as_bytes().to_vec();
            let n = bytes.len();
            bytes[n - 8..].copy_from_slice(&len.to_be_bytes());
            ContentRef::from_bytes(&bytes).expect("reference")
        };
        // Same height, another length; another height.
        for len in [99_999, 10] {
            match store.get(&with_len(len)) {
                Err(StoreError::InvalidRef(said)) => {
                    assert!(said.contains("length"), "{said}")
                }
                other => panic!("{wrapper}: length {len}: {other:?}"),
            }
            assert!(matches!(
                store.delete(&with_len(len)),
                Err(StoreError::InvalidRef(_))
            ));
        }
        // Another store's reference.
        let (other, _) = memory_store(256, wrapper);
        let theirs = other.put(&random_bytes(100_000, 84)).expect("put");
        assert!(matches!(store.get(&theirs), Err(StoreError::NotFound(_))));
        // The root itself altered.
        let mut value = backend.get_raw(r.digest());
        value[3] ^= 1;
        backend.tamper(r.digest(), value);
        assert_integrity_error(store.get(&r), "altered root");
        assert_integrity_error(store.get(&with_len(10)), "altered root, another length");
    }
}

/// The I/O error of a content written out says why, in its own message
/// (it said only "I/O error", with the cause as its source that a plain
/// print of the error left out), and says it once.
#[test]
fn an_io_error_says_its_cause_once() {
    struct Full;
    impl std::io::Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("the disk is full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (store, _) = memory_store(256, WrapperKind::AesSiv);
    let r = store.put(&random_bytes(10_000, 85)).expect("put");
    let err = store.get_to(&r, &mut Full).expect_err("a full disk");
    assert!(matches!(err, StoreError::Io(_)), "{err:?}");
    assert_eq!(err.to_string(), "I/O error: the disk is full");
    assert!(std::error::Error::source(&err).is_none());
}

#[test]
fn a_node_of_another_height_cannot_stand_in() {
    // A leaf stored as content A is put in place of a superchunk of B: the
    // key is B's digest, the value is A's (valid) leaf ciphertext.
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let leaf_content = random_bytes(200, 3);
    let leaf_ref = store.put(&leaf_content).expect("put leaf");
    let big = random_bytes(100_000, 4);
    let big_ref = store.put(&big).expect("put big");
    let leaf_value = backend.get_raw(leaf_ref.digest());
    backend.tamper(big_ref.digest(), leaf_value);
    assert_integrity_error(store.get(&big_ref), "leaf in place of root");
    // And a reference that claims the leaf is a content of another length
    // (hence another height) fails too: the leaf is sound, so the
    // reference is what is wrong.
    let mut forged = leaf_ref.digest().to_vec();
    forged.extend_from_slice(&100_000u64.to_be_bytes());
    let forged = ContentRef::from_bytes(&forged).expect("well formed");
    assert!(matches!(store.get(&forged), Err(StoreError::InvalidRef(_))));
}

#[test]
fn an_inner_node_is_not_a_content_reference_with_distinguished_roots() {
    let (store, backend) = memory_store(256, WrapperKind::AesSivDistinguishedRoot);
    let big = random_bytes(100_000, 5);
    let _ = store.put(&big).expect("put");
    let height = store.params().height(100_000);
    // Find an inner node and present it as a content's root.
    let mut tried = 0;
    for key in backend.keys() {
        for len in 257..20_000u64 {
            if store.params().height(len) != height - 1 {
                continue;
            }
            let mut r = key.clone();
            r.extend_from_slice(&len.to_be_bytes());
            let r = ContentRef::from_bytes(&r).expect("well formed");
            assert!(store.get(&r).is_err());
            tried += 1;
            break;
        }
    }
    assert!(tried > 0);
}

/// A reference count set to the largest value by whoever writes the backend
/// cannot be wrapped to 0 (which would free a node still in use): the next
/// put of the content fails with an integrity error and changes nothing.
#[test]
fn a_count_that_cannot_grow_is_an_integrity_error() {
    use seccs_store::backend::{Backend, Batch};
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(20_000, 9);
    let r = store.put(&content).expect("put");
    let value = backend.get_raw(r.digest());
    let mut batch = Batch::new();
    batch.put(r.digest().to_vec(), value, u64::MAX);
    backend.apply(&batch).expect("tamper with the count");
    assert_integrity_error(store.put(&content), "count at u64::MAX");
    let count = backend.get_counts(&[r.digest()]).expect("counts")[0];
    assert_eq!(count, Some(u64::MAX), "nothing written");
    assert_eq!(store.get(&r).expect("still reads"), content);
}

/// A reference is what a caller hands in, maybe typed or forged: its
/// length is a claim. A delete authenticates the root at the height that
/// length gives and checks the length before any count moves; a get
/// never sizes memory by the claim alone.
#[test]
fn a_reference_with_a_false_length_is_refused_and_harms_nothing() {
    let (store, _backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(100_000, 71);
    let r = store.put(&content).expect("put");
    let entries = store.usage().expect("usage").entries;
    let with_len = |len: u64| {
        let mut bytes = r.as_bytes().to_vec();
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&len.to_be_bytes());
        ContentRef::from_bytes(&bytes).expect("reference")
    };
    for len in [10, 99_999, 100_001, 1 << 40, u64::MAX] {
        let forged = with_len(len);
        assert!(store.delete(&forged).is_err(), "delete with length {len}");
        assert!(store.get(&forged).is_err(), "get with length {len}");
    }
    assert_eq!(store.usage().expect("usage").entries, entries);
    assert_eq!(store.get(&r).expect("still there"), content);
    // A digest nobody stored, with a length no memory holds.
    let mut made_up = vec![0x11u8; r.as_bytes().len() - 8];
    made_up.extend_from_slice(&u64::MAX.to_be_bytes());
    let made_up = ContentRef::from_bytes(&made_up).expect("reference");
    assert!(matches!(store.get(&made_up), Err(StoreError::NotFound(_))));
    store.delete(&r).expect("the real reference");
    assert_eq!(store.usage().expect("usage").entries, 0);
}

/// With a wrapper that does not distinguish roots, a short content's root
/// is the same node as a longer content's first leaf, and that leaf's count
/// holds the longer content's parent too. A delete counts those parents:
/// it refuses a reference that only names (and parents) hold, and a
/// second delete of a content put once, instead of taking the parent's
/// hold for a put of its own and removing a node another content needs.
/// With a wrapper that distinguishes roots the two nodes differ.
#[test]
fn a_delete_never_takes_another_contents_hold_for_a_put() {
    for wrapper in [WrapperKind::AesSiv, WrapperKind::AesSivDistinguishedRoot] {
        let params = seccs_store::Params::new(256, wrapper).expect("params");
        let (b, a) = common::content_and_its_first_leaf(&params);

        // A named, B put without a name: A's reference is no put of its own.
        let (store, backend) = memory_store(256, wrapper);
        let rb = store.put(&b).expect("put B");
        let (outcome, _) = store
            .put_named(
                &mut a.as_slice(),
                "keep/me",
                seccs_store::catalog::EntryKind::File,
            )
            .expect("put A");
        let ra = outcome.content_ref;
        match store.delete(&ra) {
            Err(StoreError::HeldByNames { names, .. }) => assert_eq!(names, ["keep/me@1"]),
            other => panic!("{wrapper:?}: a named content was deleted: {other:?}"),
        }
        store.delete(&rb).expect("B's own put");
        assert_eq!(store.get(&ra).expect("A is kept"), a);
        assert!(store.verify().expect("verify").is_clean(), "{wrapper:?}");
        store.remove_name("keep/me", None).expect("rm");
        assert_eq!(backend.keys().len(), 0, "{wrapper:?}");

        // A put once and deleted twice: the second delete finds no put.
        let (store, backend) = memory_store(256, wrapper);
        let rb = store.put(&b).expect("put B");
        let ra = store.put(&a).expect("put A");
        store.delete(&ra).expect("A's own put");
        match store.delete(&ra) {
            Err(StoreError::NotFound(_)) => {}
            other => panic!("{wrapper:?}: a second delete of A: {other:?}"),
        }
        assert_eq!(store.get(&rb).expect("B is whole"), b, "{wrapper:?}");
        store.delete(&rb).expect("B's own put");
        assert_eq!(backend.keys().len(), 0, "{wrapper:?}");
    }
}

/// A delete that cannot read a superchunk of the store (it authenticates
/// at no height, or the backend cannot decode it) cannot tell whether it
/// holds the root as another content's part, and refuses, naming it and
/// removing nothing: taking that hold for a put would remove a part the
/// other content needs once the damage is undone (a bit flipped back, a
/// value put back from a copy).
#[test]
fn a_delete_that_cannot_read_a_superchunk_refuses_rather_than_take_its_part() {
    let params = seccs_store::Params::new(256, WrapperKind::AesSiv).expect("params");
    let (b, a) = common::content_and_its_first_leaf(&params);
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let rb = store.put(&b).expect("put B");
    let ra = store.put(&a).expect("put A");
    // A value's first byte, its kind, is in the clear: 2 is a superchunk.
    let superchunks: Vec<(Vec<u8>, Vec<u8>)> = backend
        .keys()
        .into_iter()
        .map(|k| {
            let v = backend.get_raw(&k);
            (k, v)
        })
        .filter(|(_, v)| v.first() == Some(&2))
        .collect();
    assert!(!superchunks.is_empty());
    for (key, value) in &superchunks {
        let mut flipped = value.clone();
        *flipped.last_mut().expect("a sealed value") ^= 1;
        backend.tamper(key, flipped);
    }
    let entries = || {
        let mut all: Vec<_> = backend
            .keys()
            .into_iter()
            .map(|k| {
                (
                    seccs_store::backend::Backend::get(&*backend, &k).expect("get"),
                    k,
                )
            })
            .collect();
        all.sort_by(|x, y| x.1.cmp(&y.1));
        all
    };
    let before = entries();
    for _ in 0..2 {
        match store.delete(&ra) {
            Err(StoreError::Integrity(said)) => {
                assert!(said.contains("may hold this content's root"), "{said}");
                let shown = seccs_core::hexenc::encode(&superchunks[0].0);
                assert!(
                    said.contains(&shown) || superchunks.len() > 3,
                    "names what it could not read: {said}"
                );
            }
            other => panic!("a delete past an unreadable superchunk: {other:?}"),
        }
    }
    assert_eq!(entries(), before, "nothing removed, no count changed");
    for (key, value) in &superchunks {
        backend.tamper(key, value.clone());
    }
    assert_eq!(store.get(&rb).expect("B is whole"), b);
    store
        .delete(&ra)
        .expect("A's own put, once the damage is undone");
    assert!(matches!(store.delete(&ra), Err(StoreError::NotFound(_))));
    assert_eq!(store.get(&rb).expect("B is whole"), b);
    assert!(store.verify().expect("verify").is_clean());
}

/// Deleting a reference undoes a put without a name; one that only names'
/// versions hold is refused, and stays readable by its names.
#[test]
fn a_delete_never_takes_a_content_from_the_names_that_hold_it() {
    let (store, backend) = memory_store(256, WrapperKind::AesSiv);
    let content = random_bytes(20_000, 72);
    let (outcome, _) = store
        .put_named(
            &mut content.as_slice(),
            "docs/a",
            seccs_store::catalog::EntryKind::File,
        )
        .expect("put");
    let r = outcome.content_ref;
    match store.delete(&r) {
        Err(StoreError::HeldByNames { names, .. }) => assert_eq!(names, ["docs/a@1"]),
        other => panic!("a named content must not be deleted: {other:?}"),
    }
    assert_eq!(
        store
            .get(&store.resolve("docs/a").expect("name").content_ref)
            .expect("get"),
        content
    );
    // A put of its own can be undone, once; the name keeps it.
    assert_eq!(store.put(&content).expect("put"), r);
    store.delete(&r).expect("its own put");
    assert!(store.delete(&r).is_err());
    assert!(store.verify().expect("verify").is_clean());
    store.remove_name("docs/a", None).expect("rm");
    assert_eq!(backend.keys().len(), 0);
}
