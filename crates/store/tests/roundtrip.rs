//! Every content comes back byte for byte: sizes at and around the chunk
//! size, random sizes up to 8 MiB, every wrapper, both built-in backends,
//! chunk sizes 2R, 256 and 4096.

mod common;

use std::sync::Arc;

use common::{key, random_bytes};
use seccs_store::backend::{Backend, EmbeddedBackend, MemoryBackend};
use seccs_store::{Params, Store, WrapperKind};

fn sizes(chunk_size: usize, seed: u64) -> Vec<usize> {
    let cap: u64 = if chunk_size < 100 { 1 << 20 } else { 8 << 20 };
    let r = |i: u64| {
        (random_bytes(8, seed * 31 + i)
            .iter()
            .fold(0u64, |a, &b| a << 8 | b as u64)
            % cap) as usize
    };
    vec![0, 1, chunk_size - 1, chunk_size, chunk_size + 1, r(1), r(2)]
}

fn check_all(backend: Arc<dyn Backend>, wrapper: WrapperKind) {
    let r_len = wrapper.digest_len() + 8;
    for chunk_size in [2 * r_len, 256, 4096] {
        let params = Params::new(chunk_size, wrapper).expect("valid chunk size");
        let store = Store::new_unchecked(backend.clone(), params, &key(2));
        let mut refs = Vec::new();
        for (i, size) in sizes(chunk_size, chunk_size as u64).into_iter().enumerate() {
            let content = random_bytes(size, i as u64);
            let r = store.put(&content).expect("put");
            assert_eq!(r.len(), size as u64);
            assert_eq!(r.as_bytes().len(), r_len);
            assert_eq!(
                store.get(&r).expect("get"),
                content,
                "{wrapper} S={chunk_size} n={size}"
            );
            refs.push(r);
        }
        for r in refs {
            store.delete(&r).expect("delete");
        }
        assert_eq!(
            store.usage().expect("usage").entries,
            0,
            "{wrapper} S={chunk_size}"
        );
    }
}

#[test]
fn every_wrapper_round_trips_on_the_memory_backend() {
    for wrapper in WrapperKind::ALL {
        check_all(Arc::new(MemoryBackend::new()), wrapper);
    }
}

#[test]
fn every_wrapper_round_trips_on_the_embedded_backend() {
    for wrapper in WrapperKind::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = EmbeddedBackend::open(dir.path()).expect("open embedded");
        check_all(Arc::new(backend), wrapper);
    }
}

#[test]
fn single_threaded_and_parallel_puts_are_byte_identical() {
    // Several 4 MiB segments: commits overlap the sealing of the next one.
    let content = random_bytes(21 << 20, 42);
    let (mut single, single_backend) = common::memory_store(4096, WrapperKind::AesSiv);
    single.set_parallel(false);
    let (parallel, parallel_backend) = common::memory_store(4096, WrapperKind::AesSiv);
    assert_eq!(
        single.put(&content).expect("put"),
        parallel.put(&content).expect("put")
    );
    let mut a = single_backend.keys();
    let mut b = parallel_backend.keys();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

/// A content that ends exactly where a read buffer (2 MiB) ends, on a
/// boundary: its last leaf is cut before the end is seen. Files of zeros a
/// multiple of 2 MiB long are such contents, and once failed to put. Zeros
/// and a short repeating pattern (both cut at the longest leaf) at sizes
/// around read buffers and 4 MiB segments, for two chunk sizes (two tree
/// heights), single-threaded and parallel.
#[test]
fn contents_that_end_where_a_read_buffer_ends_round_trip() {
    const MIB: usize = 1 << 20;
    let sizes = [
        2 * MIB - 1,
        2 * MIB,
        2 * MIB + 1,
        4 * MIB,
        4 * MIB + 4096,
        6 * MIB,
        8 * MIB - 4096,
        10 * MIB,
    ];
    for chunk_size in [256, 4096] {
        for parallel in [false, true] {
            let (mut store, backend) = common::memory_store(chunk_size, WrapperKind::AesSiv);
            store.set_parallel(parallel);
            let mut refs = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                for pattern in [0usize, 7] {
                    let mut content: Vec<u8> = (0..len).map(|j| (j % 7 * pattern) as u8).collect();
                    // Data in the first leaf of some, so that not every
                    // leaf is the same.
                    if i % 2 == 1 {
                        content[..200].copy_from_slice(&random_bytes(200, i as u64));
                    }
                    let what =
                        format!("S={chunk_size} n={len} pattern={pattern} parallel={parallel}");
                    let r = store.put(&content).expect(&what);
                    assert_eq!(store.get(&r).expect("get"), content, "{what}");
                    let mut tail = Vec::new();
                    store
                        .get_range(&r, len as u64 - 5000, 5000, &mut tail)
                        .expect("range");
                    assert_eq!(tail, &content[len - 5000..], "{what}");
                    refs.push(r);
                }
            }
            assert!(store.verify().expect("verify").is_clean());
            for r in refs {
                store.delete(&r).expect("delete");
            }
            assert_eq!(
                backend.keys().len(),
                0,
                "S={chunk_size} parallel={parallel}"
            );
        }
    }
}

#[test]
fn streaming_put_gives_the_same_reference_as_a_whole_put() {
    let content = random_bytes(40 << 20, 5);
    let (store, _) = common::memory_store(4096, WrapperKind::AesSiv);
    let whole = store.put(&content).expect("put");
    // A reader that returns odd-sized pieces.
    struct Dribble<'a>(&'a [u8], usize);
    impl std::io::Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 70_001 + 12_345;
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let streamed = store
        .put_reader(&mut Dribble(&content, 0))
        .expect("put_reader");
    assert_eq!(streamed.content_ref, whole);
    assert!(!streamed.is_new);
    let mut out = Vec::new();
    store.get_to(&whole, &mut out).expect("get");
    assert_eq!(out, content);
}

#[test]
fn compressible_contents_round_trip_with_zstd_and_take_less_space() {
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("fn item_{}() {{ return {}; }}\n", i % 977, i % 13).into_bytes())
        .collect();
    let plain = Params::new(4096, WrapperKind::AesSiv).expect("valid");
    let packed = plain.with_compression(seccs_store::Compression::Zstd(
        seccs_store::ZstdLevel::DEFAULT,
    ));
    let mut sizes = Vec::new();
    for params in [plain, packed] {
        let store = Store::new_unchecked(Arc::new(MemoryBackend::new()), params, &key(3));
        let r = store.put(&text).expect("put");
        assert_eq!(store.get(&r).expect("get"), text);
        sizes.push(store.usage().expect("usage").bytes);
        store.delete(&r).expect("delete");
        assert_eq!(store.usage().expect("usage").entries, 0);
    }
    assert!(
        sizes[1] * 3 < sizes[0],
        "zstd {} vs plain {}",
        sizes[1],
        sizes[0]
    );
}

/// `Store::open` checks the key against the store's data: another key is
/// refused before anything is written (`Store::new` took any key, and a
/// put under a wrong one wrote nodes and records the store's key cannot
/// read). A store of unnamed contents is checked by its nodes, a new
/// backend takes any key, and the unchecked path says so in its name.
#[test]
fn a_store_opened_with_another_key_is_refused_before_anything_is_written() {
    let params = Params::new(256, WrapperKind::AesSiv).expect("params");
    for named in [true, false] {
        let backend = Arc::new(MemoryBackend::new());
        let store = Store::open(backend.clone(), params, &key(1)).expect("a new store");
        assert!(store.key_checked());
        let content = random_bytes(40_000, 91);
        let r = if named {
            store
                .put_named(
                    &mut content.as_slice(),
                    "n",
                    seccs_store::catalog::EntryKind::File,
                )
                .expect("put")
                .0
                .content_ref
        } else {
            store.put(&content).expect("put")
        };
        drop(store);
        let keys = backend.keys();
        match Store::open(backend.clone(), params, &key(2)) {
            Err(seccs_store::StoreError::WrongKey(said)) => {
                assert!(said.contains("nothing was written"), "{said}")
            }
            other => panic!("named {named}: another key: {other:?}"),
        }
        assert_eq!(backend.keys(), keys);
        let store = Store::open(backend.clone(), params, &key(1)).expect("the store's key");
        assert_eq!(store.get(&r).expect("get"), content);
        assert!(!Store::new_unchecked(backend.clone(), params, &key(2)).key_checked());
    }
}

/// A store of unnamed contents opened with its own key but another
/// wrapper is said to have other parameters, naming the wrapper its nodes
/// open under, not refused as a wrong key; a wrong key is still one.
#[test]
fn a_store_opened_with_another_wrapper_is_said_to_have_other_parameters() {
    let params = Params::new(256, WrapperKind::AesSiv).expect("params");
    let backend = Arc::new(MemoryBackend::new());
    let store = Store::open(backend.clone(), params, &key(1)).expect("a new store");
    let content = random_bytes(40_000, 92);
    store.put(&content).expect("put");
    drop(store);
    let keys = backend.keys();
    let other = Params::new(256, WrapperKind::HmacSha256).expect("params");
    match Store::open(backend.clone(), other, &key(1)) {
        Err(seccs_store::StoreError::Config(said)) => {
            assert!(said.contains("made with other parameters"), "{said}");
            assert!(
                said.contains("under the aes-siv or aes-siv-dr wrapper"),
                "{said}"
            );
            assert!(said.contains("not under hmac-sha-256"), "{said}");
            assert!(said.contains("Nothing was written"), "{said}");
        }
        other => panic!("another wrapper: {other:?}"),
    }
    assert!(matches!(
        Store::open(backend.clone(), other, &key(2)),
        Err(seccs_store::StoreError::WrongKey(_))
    ));
    assert_eq!(backend.keys(), keys);
}

/// A key that opens only some of a store's catalog records is not proven
/// to be the store's: `Store::open` takes it (one damaged record must not
/// lock a user out), but its gc leaves the records that fail, which may be
/// the store's own key's. A wrong key that put a name into a new backend
/// before the store's key wrote there once had gc remove every name of the
/// store's key (its records fail under the wrong one), and the store's key
/// was refused afterwards.
#[test]
fn a_key_that_opens_only_some_records_removes_none_of_the_others()
-> Result<(), Box<dyn std::error::Error>> {
    use seccs_store::catalog::EntryKind;
    let params = Params::new(256, WrapperKind::AesSiv)?;
    let (right, wrong) = (key(1), key(2));
    let dir = tempfile::tempdir()?;
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    type Opener<'a> = Box<dyn Fn() -> Result<Arc<dyn Backend>, Box<dyn std::error::Error>> + 'a>;
    let backends: [(&str, Opener); 2] = [
        ("memory", Box::new(|| Ok(memory.clone()))),
        (
            "embedded",
            Box::new(|| Ok(Arc::new(EmbeddedBackend::open(&dir.path().join("db"))?))),
        ),
    ];
    for (kind, backend) in &backends {
        let store = Store::open(backend()?, params, &wrong)?;
        store.put_named(
            &mut &b"written with the wrong key"[..],
            "L",
            EntryKind::File,
        )?;
        drop(store);
        // As a store directory opens it, its key checked by its own means.
        let store = Store::new_unchecked(backend()?, params, &right);
        let content = random_bytes(20_000, 93);
        store.put_named(&mut content.as_slice(), "C", EntryKind::File)?;
        drop(store);

        let store = Store::open(backend()?, params, &wrong)?;
        assert!(!store.key_checked(), "{kind}");
        let gc = store.gc()?;
        assert!(gc.records_removed.is_empty(), "{kind}: {gc:?}");
        assert_eq!(gc.records_left.len(), 1, "{kind}: {gc:?}");
        drop(store);

        let store = Store::open(backend()?, params, &right)?;
        assert!(!store.key_checked(), "{kind}: the wrong key's record fails");
        let mut out = Vec::new();
        store.get_named("C", None, &mut out)?;
        assert_eq!(out, content, "{kind}");
    }
    Ok(())
}

/// A store with names opened with its own key but another wrapper or
/// another chunk size is refused with a configuration error naming what
/// differs, before anything is written: the catalog's key does not depend
/// on them, and such a store once took puts that its own parameters read as
/// tampered (with `hmac-sha-256`, in plaintext beside encrypted nodes).
/// Its own parameters still open it.
#[test]
fn a_store_with_names_opened_with_other_parameters_is_refused()
-> Result<(), Box<dyn std::error::Error>> {
    use seccs_store::catalog::EntryKind;
    let made = Params::new(4096, WrapperKind::AesSiv)?;
    let backend = Arc::new(MemoryBackend::new());
    let store = Store::open(backend.clone(), made, &key(1))?;
    // A directory (no content) first: the check passes by it.
    store.put_named(&mut &b""[..], "d", EntryKind::Directory)?;
    let content = random_bytes(300_000, 94);
    let (put, _) = store.put_named(&mut content.as_slice(), "d/a", EntryKind::File)?;
    drop(store);
    let keys = backend.keys();
    for (other, says) in [
        (
            Params::new(4096, WrapperKind::HmacSha256)?,
            "made with the aes-siv",
        ),
        (
            Params::new(4096, WrapperKind::Sha256)?,
            "made with the aes-siv",
        ),
        (
            Params::new(256, WrapperKind::AesSiv)?,
            "made with another chunk size",
        ),
    ] {
        match Store::open(backend.clone(), other, &key(1)) {
            Err(seccs_store::StoreError::Config(said)) => {
                assert!(said.contains(says), "{said}");
                assert!(said.contains("Nothing was written"), "{said}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(backend.keys(), keys);
    let store = Store::open(backend.clone(), made, &key(1))?;
    let mut out = Vec::new();
    store.get_named("d/a", None, &mut out)?;
    assert_eq!(out, content);
    drop(store);
    // A root that opens under nothing is damage, for verify to report:
    // it refuses no parameters.
    let root = put.content_ref.digest();
    let mut value = backend.get_raw(root);
    value[20] ^= 1;
    backend.tamper(root, value);
    Store::open(backend.clone(), made, &key(1))?;
    Store::open(
        backend.clone(),
        Params::new(256, WrapperKind::AesSiv)?,
        &key(1),
    )?;
    Ok(())
}

/// A reader that has the backend lose everything once it has given
/// `after` bytes: past the first 4 MiB segment of a put, which is then
/// committed, so that a later batch lists children that are gone.
struct LosingReader<'a> {
    content: &'a [u8],
    at: usize,
    after: usize,
    backend: &'a MemoryBackend,
}

impl std::io::Read for LosingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.after && self.after > 0 {
            self.backend.lose_everything();
            self.after = 0;
        }
        let n = buf.len().min(self.content.len() - self.at).min(1 << 16);
        buf[..n].copy_from_slice(&self.content[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A put that finds a child it wrote gone says the store's marker is gone
/// (the server lost the store's data) only where the backend held a marker
/// when the store was opened: a store that `Store::open` found without one
/// never had a marker to lose, and says a node is missing.
#[test]
fn a_lost_child_is_blamed_on_a_lost_marker_only_where_one_was_read() {
    let params = Params::new(4096, WrapperKind::AesSiv).expect("params");
    let content = random_bytes(24 << 20, 95);
    for marked in [false, true] {
        let backend = Arc::new(MemoryBackend::keeping_marker());
        if marked {
            backend
                .write_marker(seccs_store::dir::key_check(&key(1)).as_bytes())
                .expect("marker");
        }
        let store = Store::open(backend.clone(), params, &key(1)).expect("open");
        let mut reader = LosingReader {
            content: &content,
            at: 0,
            after: 20 << 20,
            backend: &backend,
        };
        let err = store
            .put_reader(&mut reader)
            .expect_err("its children went");
        let said = err.to_string();
        match marked {
            true => assert!(said.contains("marker is gone"), "{said}"),
            false => {
                assert!(
                    matches!(err, seccs_store::StoreError::Integrity(_)),
                    "{err:?}"
                );
                assert!(!said.contains("marker"), "{said}");
            }
        }
    }
}
